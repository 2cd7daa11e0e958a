package schemas

import "strings"

// countryCodes maps country names, as rosters write them, to their COG
// code (INSEE's code officiel géographique of countries, current ones):
// France, Europe, Asia, Africa and the Americas. Keys are folded by
// countryKey; a few usual names that are not INSEE's wording are listed
// too (USA, Angleterre, RDC, …).
var countryCodes = func() map[string]string {
	byCode := map[string][]string{
		"99100": {"France"},
		"99101": {"Danemark"}, "99102": {"Islande"}, "99103": {"Norvège"}, "99104": {"Suède"}, "99105": {"Finlande"},
		"99106": {"Estonie"}, "99107": {"Lettonie"}, "99108": {"Lituanie"}, "99109": {"Allemagne"}, "99110": {"Autriche"},
		"99111": {"Bulgarie"}, "99112": {"Hongrie"}, "99113": {"Liechtenstein"}, "99114": {"Roumanie"},
		"99116": {"Tchéquie", "République tchèque"}, "99117": {"Slovaquie"}, "99118": {"Bosnie-Herzégovine", "Bosnie"},
		"99119": {"Croatie"}, "99120": {"Monténégro"}, "99121": {"Serbie"}, "99122": {"Pologne"}, "99123": {"Russie"},
		"99125": {"Albanie"}, "99126": {"Grèce"}, "99127": {"Italie"}, "99128": {"Saint-Marin"}, "99129": {"Vatican"},
		"99130": {"Andorre"}, "99131": {"Belgique"}, "99132": {"Royaume-Uni", "Angleterre", "Grande-Bretagne", "Écosse"},
		"99134": {"Espagne"}, "99135": {"Pays-Bas", "Hollande"}, "99136": {"Irlande"}, "99137": {"Luxembourg"},
		"99138": {"Monaco"}, "99139": {"Portugal"}, "99140": {"Suisse"}, "99144": {"Malte"}, "99145": {"Slovénie"},
		"99148": {"Biélorussie", "Bélarus"}, "99151": {"Moldavie"}, "99155": {"Ukraine"},
		"99156": {"Macédoine du Nord", "Macédoine"}, "99157": {"Kosovo"},
		"99201": {"Arabie saoudite"}, "99203": {"Irak"}, "99204": {"Iran"}, "99205": {"Liban"}, "99206": {"Syrie"},
		"99207": {"Israël"}, "99208": {"Turquie"}, "99212": {"Afghanistan"}, "99213": {"Pakistan"}, "99214": {"Bhoutan"},
		"99215": {"Népal"}, "99216": {"Chine"}, "99217": {"Japon"}, "99219": {"Thaïlande"}, "99220": {"Philippines"},
		"99222": {"Jordanie"}, "99223": {"Inde"}, "99224": {"Birmanie", "Myanmar"}, "99225": {"Brunei"},
		"99226": {"Singapour"}, "99227": {"Malaisie"}, "99229": {"Maldives"}, "99230": {"Hong Kong"},
		"99231": {"Indonésie"}, "99232": {"Macao"}, "99234": {"Cambodge"}, "99235": {"Sri Lanka"}, "99236": {"Taïwan"},
		"99238": {"Corée du Nord"}, "99239": {"Corée du Sud", "Corée"}, "99240": {"Koweït"}, "99241": {"Laos"},
		"99242": {"Mongolie"}, "99243": {"Vietnam", "Viêt Nam", "Viet Nam"}, "99246": {"Bangladesh"},
		"99247": {"Émirats arabes unis"}, "99248": {"Qatar"}, "99249": {"Bahreïn"}, "99250": {"Oman"}, "99251": {"Yémen"},
		"99252": {"Arménie"}, "99253": {"Azerbaïdjan"}, "99254": {"Chypre"}, "99255": {"Géorgie"},
		"99256": {"Kazakhstan"}, "99257": {"Kirghizstan"}, "99258": {"Ouzbékistan"}, "99259": {"Tadjikistan"},
		"99260": {"Turkménistan"}, "99261": {"Palestine"}, "99262": {"Timor oriental"},
		"99301": {"Égypte"}, "99302": {"Libéria"}, "99303": {"Afrique du Sud"}, "99304": {"Gambie"},
		"99309": {"Tanzanie"}, "99310": {"Zimbabwe"}, "99311": {"Namibie"},
		"99312": {"République démocratique du Congo", "RDC", "Congo-Kinshasa"}, "99314": {"Guinée équatoriale"},
		"99315": {"Éthiopie"}, "99316": {"Libye"}, "99317": {"Érythrée"}, "99318": {"Somalie"}, "99321": {"Burundi"},
		"99322": {"Cameroun"}, "99323": {"Centrafrique", "République centrafricaine"},
		"99324": {"Congo", "République du Congo", "Congo-Brazzaville"}, "99326": {"Côte d'Ivoire"}, "99327": {"Bénin"},
		"99328": {"Gabon"}, "99329": {"Ghana"}, "99330": {"Guinée"}, "99331": {"Burkina", "Burkina Faso"},
		"99332": {"Kenya"}, "99333": {"Madagascar"}, "99334": {"Malawi"}, "99335": {"Mali"}, "99336": {"Mauritanie"},
		"99337": {"Niger"}, "99338": {"Nigéria", "Nigeria"}, "99339": {"Ouganda"}, "99340": {"Rwanda"},
		"99341": {"Sénégal"}, "99342": {"Sierra Leone"}, "99343": {"Soudan"}, "99344": {"Tchad"}, "99345": {"Togo"},
		"99346": {"Zambie"}, "99347": {"Botswana"}, "99348": {"Lesotho"}, "99349": {"Soudan du Sud"}, "99350": {"Maroc"},
		"99351": {"Tunisie"}, "99352": {"Algérie"}, "99389": {"Sahara occidental"}, "99390": {"Maurice", "Île Maurice"},
		"99391": {"Eswatini", "Swaziland"}, "99392": {"Guinée-Bissau", "Guinée-Bissao"}, "99393": {"Mozambique"},
		"99394": {"Sao Tomé-et-Principe"}, "99395": {"Angola"}, "99396": {"Cap-Vert"}, "99397": {"Comores"},
		"99398": {"Seychelles"}, "99399": {"Djibouti"},
		"99401": {"Canada"}, "99404": {"États-Unis", "USA", "États-Unis d'Amérique"}, "99405": {"Mexique"},
		"99406": {"Costa Rica"}, "99407": {"Cuba"}, "99408": {"République dominicaine"}, "99409": {"Guatémala", "Guatemala"},
		"99410": {"Haïti"}, "99411": {"Honduras"}, "99412": {"Nicaragua"}, "99413": {"Panama"}, "99414": {"Salvador"},
		"99415": {"Argentine"}, "99416": {"Brésil"}, "99417": {"Chili"}, "99418": {"Bolivie"}, "99419": {"Colombie"},
		"99420": {"Équateur"}, "99421": {"Paraguay"}, "99422": {"Pérou"}, "99423": {"Uruguay"},
		"99424": {"Vénézuéla", "Venezuela"}, "99426": {"Jamaïque"},
	}
	m := make(map[string]string)
	for code, names := range byCode {
		for _, n := range names {
			m[countryKey(n)] = code
		}
	}
	return m
}()

// countryKey folds a country name: upper case, no accents, no spaces,
// dots, hyphens or apostrophes ("Côte d'Ivoire" → "COTEDIVOIRE").
func countryKey(s string) string {
	s = fold(s)
	if !strings.ContainsAny(s, "-'’") { // Replace copies s even when it has none
		return s
	}
	return countryPunct.Replace(s)
}

// countryPunct drops what countryKey ignores beyond fold's.
var countryPunct = strings.NewReplacer("-", "", "'", "", "’", "")

// CountryCode returns the COG code of a country named as rosters write it,
// or "" when the name is not known.
func CountryCode(name string) string { return countryCodes[countryKey(name)] }
