package pipeline

import (
	"bufio"
	"cmp"
	"context"
	stdcsv "encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/parquet"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// Export formats.
const (
	FormatCSV     = "csv"
	FormatXLSX    = "xlsx"
	FormatParquet = "parquet"
)

// Exporter gives agents a batch's results as they can open them: each
// input row with its original columns, followed by its results (CSV or
// XLSX), or the published results alone in one Parquet file.
type Exporter struct {
	S3     *s3.Client
	Ledger *ledger.Store
	// Encoding and Sheet read the input file as the splitter did.
	Encoding, Sheet string
	// TmpDir receives the workbook parts too large for memory, read or
	// written. Default: "" (the system's temporary folder).
	TmpDir string
}

// Export writes batch id in format to w and returns the rows written.
func (e *Exporter) Export(ctx context.Context, id, format string, w io.Writer) (int, error) {
	b, err := e.Ledger.Batch(ctx, id)
	if err != nil {
		return 0, err
	}
	if !b.Published() {
		msg := fmt.Sprintf(ErrFmtNotFinished, id, StateLabel(b.State))
		if b.Error != "" {
			msg += " : " + b.Error
		}
		return 0, errors.New(msg)
	}
	switch format {
	case FormatParquet, FormatCSV, FormatXLSX:
	default:
		return 0, fmt.Errorf(ErrFmtFormat, format)
	}
	results, err := e.results(ctx, id)
	if err != nil {
		return 0, err
	}
	if format == FormatParquet {
		// In row order, then the batch's order of checks.
		rank := map[string]int{}
		for i, c := range b.CheckList() {
			rank[string(c)] = i
		}
		all := slices.SortedFunc(maps.Values(results), func(a, b schemas.ResultRow) int {
			return cmp.Or(cmp.Compare(a.RowNumber, b.RowNumber), cmp.Compare(rank[a.Check], rank[b.Check]))
		})
		return len(all), parquet.Encode(w, all)
	}
	t, err := e.joined(ctx, b, results)
	if err != nil {
		return 0, err
	}
	if format == FormatCSV {
		return len(t.rows), writeCSV(w, t)
	}
	if b.ManifestKey != "" {
		m, err := ReadManifest(ctx, e.S3, b.ManifestKey)
		if err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
		t.manifest = &m
	}
	return len(t.rows), writeXLSX(w, t, e.TmpDir)
}

// FormatOf is the export format of a file name's extension: xlsx, csv or
// parquet; an error in French for any other extension.
func FormatOf(name string) (string, error) {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".xlsx":
		return FormatXLSX, nil
	case ".csv":
		return FormatCSV, nil
	case ".parquet":
		return FormatParquet, nil
	case "":
		ext = name
	}
	return "", fmt.Errorf(ErrFmtFormat, ext)
}

// ReadManifest reads a batch's published manifest.
func ReadManifest(ctx context.Context, client *s3.Client, key string) (schemas.Manifest, error) {
	var m schemas.Manifest
	body, _, err := client.Open(ctx, key)
	if err != nil {
		return m, err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(&m); err != nil {
		return m, fmt.Errorf("manifest %s: %w", key, err)
	}
	return m, nil
}

// ErrInputReplaced is returned (wrapped, with what to do) by a CSV or XLSX
// export whose batch's input file is no longer in the bucket as it was
// verified: replaced by another file under the same name, or deleted.
var ErrInputReplaced = errors.New("le fichier déposé pour ce lot a été remplacé ou supprimé depuis")

// replacedHint says what agents can do instead.
const replacedHint = "ses lignes ne peuvent plus être jointes à ses résultats sans risque de mélanger des familles ; " +
	"exportez les résultats seuls (-o resultats.parquet), ou exportez le lot du fichier déposé ensuite"

type rowCheck struct {
	n     int64
	check string
}

// results reads the batch's published part files.
func (e *Exporter) results(ctx context.Context, id string) (map[rowCheck]schemas.ResultRow, error) {
	rows, err := BatchResults(ctx, e.S3, e.Ledger, id)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	out := make(map[rowCheck]schemas.ResultRow, len(rows))
	for _, r := range rows {
		out[rowCheck{r.RowNumber, r.Check}] = r
	}
	return out, nil
}

// joined reads the input file again and puts each row's results after its
// original columns.
func (e *Exporter) joined(ctx context.Context, b ledger.Batch, results map[rowCheck]schemas.ResultRow) (*table, error) {
	// Exactly the version the batch verified: the rows are joined to its
	// results by number, so another file under the same name would give
	// one family's results to another.
	pin := PinnedVersion(b)
	if !Pinned(pin) {
		return nil, fmt.Errorf("%w : %s", ErrInputReplaced, replacedHint)
	}
	body, info, err := e.S3.OpenVersion(ctx, b.ObjectKey, pin)
	if errors.Is(err, s3.ErrNotFound) {
		return nil, fmt.Errorf("%w : %s", ErrInputReplaced, replacedHint)
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer body.Close()
	key, err := ParseIncomingKey(b.ObjectKey)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	opts := csv.Options{Checks: b.CheckList(), Encoding: e.Encoding, Sheet: e.Sheet, TmpDir: e.TmpDir, Now: now}
	// The tenant's column mapping, as the splitter read the file.
	if raw, err := ReadConfig(ctx, e.S3, ColumnsKey(b.Tenant)); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	} else if len(raw) > 0 {
		if opts.Columns, err = ParseColumns(raw); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	// The header the splitter read: the object's, set at upload.
	if opts.HeaderRow, err = HeaderRow(info.Metadata); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	r, err := csv.OpenFile(ctx, body, key.File, opts)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	checks := b.CheckList()
	t := &table{batch: b, checks: checks, byStatus: map[schemas.Check]map[string]int64{}, tranches: map[string]*trancheStats{}}
	t.header = append([]string(nil), r.Header()...)
	t.inputCols = len(t.header)
	for _, c := range checks {
		t.header = append(t.header, resultColumns(c, len(checks) > 1)...)
		t.byStatus[c] = map[string]int64{}
	}
	birth, hasBirth := r.Column(schemas.ColDateNaissance)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		rec := make([]cell, len(r.Header()), len(t.header))
		for i, v := range row.Record {
			if i < len(rec) {
				rec[i] = cell{text: v}
			}
		}
		if hasBirth && birth < len(rec) {
			if y, m, d, problem := schemas.ParseBirthDate(rec[birth].text, now); problem == "" && d != 0 {
				rec[birth].kind, rec[birth].t = cellDate, time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
			}
		}
		mark := markNone
		for i, c := range checks {
			res := results[rowCheck{row.Number, string(c)}]
			rec = append(rec, resultValues(c, res)...)
			t.byStatus[c][res.Status]++
			switch {
			case res.Status == string(schemas.StatusNotFound):
				mark = max(mark, markNotFound)
			case res.NeedsReview, res.Status == string(schemas.StatusInvalidInput), res.Status == string(schemas.StatusIdentityUnresolved):
				mark = markReview
			}
			if c == schemas.CheckQuotientFamilial && res.Tranche != nil {
				t.addTranche(*res.Tranche, res.Tarif, row, i)
			}
		}
		t.rows = append(t.rows, tableRow{cells: rec, mark: mark})
	}
	return t, nil
}

// cellKind is how a cell is written in a workbook.
type cellKind uint8

const (
	cellText   cellKind = iota
	cellNumber          // n
	cellMoney           // n cents, shown in euros
	cellDate            // t, and text as the file held it
)

// cell is one value of an export.
type cell struct {
	kind cellKind
	text string
	n    int64
	t    time.Time
}

func textCell(s string) cell { return cell{text: s} }

// String is the cell as a CSV holds it: a roster's value as the file held
// it, a price with a decimal comma.
func (c cell) String() string {
	switch c.kind {
	case cellNumber:
		return strconv.FormatInt(c.n, 10)
	case cellMoney:
		return fmt.Sprintf("%d,%02d", c.n/100, c.n%100)
	case cellDate:
		if c.text != "" {
			return c.text
		}
		return c.t.Format("02/01/2006")
	}
	return c.text
}

// value is the cell as a workbook holds it: text through SafeCell, never a
// formula; numbers, prices and dates as numbers.
func (c cell) value() any {
	switch c.kind {
	case cellNumber:
		return c.n
	case cellMoney:
		return float64(c.n) / 100
	case cellDate:
		return c.t
	}
	return SafeCell(c.text)
}

// rowMark is how a row is highlighted: the rows to review (or to correct)
// win over those not found.
type rowMark uint8

const (
	markNone rowMark = iota
	markNotFound
	markReview
)

// table is an export: the roster's columns, then each check's.
type table struct {
	batch     ledger.Batch
	checks    []schemas.Check
	header    []string
	inputCols int
	rows      []tableRow
	// byStatus counts the rows by check and status ("": not checked).
	byStatus map[schemas.Check]map[string]int64
	// tranches are the QF rows priced, by bracket.
	tranches map[string]*trancheStats
	// manifest is the batch's, for the workbook's summary; nil without.
	manifest *schemas.Manifest
}

type tableRow struct {
	cells []cell
	mark  rowMark
}

// trancheStats are the rows of a bracket: families (one identity, one
// allocataire, whatever the number of children), rows, price per meal.
type trancheStats struct {
	families map[string]bool
	rows     int64
	price    *int64
	revenue  int64
}

// addTranche counts row i's check in bracket name at price cents.
func (t *table) addTranche(name string, price *int64, row csv.Row, i int) {
	s := t.tranches[name]
	if s == nil {
		s = &trancheStats{families: map[string]bool{}}
		t.tranches[name] = s
	}
	s.rows++
	if i < len(row.Checks) {
		// Siblings carry their parent's identity: one family.
		s.families[fmt.Sprint(row.Checks[i].Identity)] = true
	}
	if price != nil {
		s.price = price
		s.revenue += *price
	}
}

// resultColumns names the columns a check adds.
func resultColumns(c schemas.Check, prefixed bool) []string {
	p := ""
	if prefixed {
		p = c.Label() + " : "
	}
	if c == schemas.CheckQuotientFamilial {
		return []string{p + HeaderStatus, p + HeaderQF, p + HeaderTranche, p + HeaderTarif, p + HeaderReview, p + HeaderMessage}
	}
	return []string{p + HeaderStatus, p + HeaderResult, p + HeaderMessage}
}

// resultValues are a result's values under resultColumns.
func resultValues(c schemas.Check, r schemas.ResultRow) []cell {
	msg := deref(r.ErrorMessage)
	status := schemas.Status(r.Status).Label()
	if r.Status == "" {
		status = ValueNotChecked
	}
	if c == schemas.CheckQuotientFamilial {
		qf, tarif, review := cell{}, cell{}, cell{}
		if r.QFValue != nil {
			qf = cell{kind: cellNumber, n: *r.QFValue}
		}
		if r.Tarif != nil {
			tarif = cell{kind: cellMoney, n: *r.Tarif}
		}
		if r.NeedsReview {
			review = textCell(ValueYes)
			if msg == "" {
				// Results recorded before the worker gave the reason.
				msg = schemas.ReviewReason(r.QFValue)
			}
		}
		return []cell{textCell(status), qf, textCell(deref(r.Tranche)), tarif, review, textCell(msg)}
	}
	return []cell{textCell(status), textCell(facts(r)), textCell(msg)}
}

// facts summarises a result's check-specific values in French.
func facts(r schemas.ResultRow) string {
	var parts []string
	yes := func(label string, v *bool) {
		if v != nil {
			if *v {
				parts = append(parts, label+" : "+ValueYes)
			} else {
				parts = append(parts, label+" : "+ValueNo)
			}
		}
	}
	text := func(label string, v *string) {
		if v != nil && *v != "" {
			parts = append(parts, label+" : "+*v)
		}
	}
	date := func(label string, v *int32) {
		if v != nil {
			parts = append(parts, label+" : "+time.Unix(int64(*v)*86400, 0).UTC().Format("02/01/2006"))
		}
	}
	yes("bénéficiaire", r.Beneficiary)
	date("depuis le", r.BenefitSince)
	yes("avec participation", r.C2SWithParticipation)
	yes("majoré", r.BenefitIncreased)
	yes("boursier", r.ScholarshipHolder)
	text("échelon", r.ScholarshipLevel)
	yes("inscrit", r.StudentEnrolled)
	text("régime", r.StudentRegime)
	yes("inscrit à France Travail", r.JobseekerRegistered)
	if r.JobseekerCategory != nil {
		parts = append(parts, "catégorie : "+strconv.Itoa(int(*r.JobseekerCategory)))
	}
	yes("scolarisé", r.PupilEnrolled)
	text("année scolaire", r.SchoolYear)
	text("établissement", r.EstablishmentUAI)
	text("régime de demi-pension", r.BoardingRegime)
	return strings.Join(parts, " ; ")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// safeRecord returns rec's cells through SafeCell, in a new slice.
func safeRecord(rec []string) []string {
	out := make([]string, len(rec))
	for i, v := range rec {
		out[i] = SafeCell(v)
	}
	return out
}

// writeCSV writes what Excel opens as is: UTF-8 with a BOM, ';', CRLF,
// every cell through SafeCell.
func writeCSV(w io.Writer, t *table) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("\ufeff")
	cw := stdcsv.NewWriter(bw)
	cw.Comma = ';'
	cw.UseCRLF = true
	cw.Write(safeRecord(t.header))
	rec := make([]string, len(t.header))
	for _, r := range t.rows {
		for i, c := range r.cells {
			rec[i] = SafeCell(c.String())
		}
		cw.Write(rec[:len(r.cells)])
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return bw.Flush()
}

// Workbook formats: prices in euros, dates as French agents write them,
// and the fills of the rows to review and of those not found.
const (
	euroFormat   = `#,##0.00\ "€"`
	dateFormat   = "dd/mm/yyyy"
	reviewFill   = "FFEB9C"
	notFoundFill = "FFC7CE"
	headerFill   = "D9E1F2"
)

// workbookStyles makes and keeps the workbook's cell styles.
type workbookStyles struct {
	f     *excelize.File
	cache map[[2]uint8]int
}

// get returns the style of a cell of kind in a row marked mark.
func (s *workbookStyles) get(kind cellKind, mark rowMark) int {
	k := [2]uint8{uint8(kind), uint8(mark)}
	if id, ok := s.cache[k]; ok {
		return id
	}
	st := &excelize.Style{Alignment: &excelize.Alignment{Vertical: "top"}}
	switch kind {
	case cellMoney:
		f := euroFormat
		st.CustomNumFmt = &f
	case cellDate:
		f := dateFormat
		st.CustomNumFmt = &f
	case cellNumber:
		st.NumFmt = 1 // 0
	}
	switch mark {
	case markReview:
		st.Fill = excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{reviewFill}}
	case markNotFound:
		st.Fill = excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{notFoundFill}}
	}
	id, _ := s.f.NewStyle(st)
	s.cache[k] = id
	return id
}

// columnWidths sizes each column to its longest value (header included),
// within bounds Excel users read without scrolling sideways.
func columnWidths(t *table) []float64 {
	widths := make([]float64, len(t.header))
	for i, h := range t.header {
		widths[i] = float64(utf8.RuneCountInString(h))
	}
	for _, r := range t.rows {
		for i, c := range r.cells {
			n := utf8.RuneCountInString(c.String())
			if c.kind == cellDate || c.kind == cellMoney {
				n = 10
			}
			widths[i] = max(widths[i], float64(n))
		}
	}
	for i := range widths {
		widths[i] = min(max(widths[i]+2, 8), 60)
	}
	return widths
}

// writeXLSX writes the results sheet (header in bold, frozen and filtered;
// typed cells; rows to review and not found highlighted; text cells
// through SafeCell, never a formula) and the summary sheet.
func writeXLSX(w io.Writer, t *table, tmpDir string) error {
	f := excelize.NewFile(excelize.Options{TmpDir: tmpDir})
	defer f.Close()
	if err := f.SetSheetName("Sheet1", SheetResults); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	styles := &workbookStyles{f: f, cache: map[[2]uint8]int{}}
	// Set on the sheet before it is streamed: the stream writer writes it.
	last, _ := excelize.CoordinatesToCellName(max(len(t.header), 1), len(t.rows)+1)
	if err := f.AutoFilter(SheetResults, "A1:"+last, nil); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	sw, err := f.NewStreamWriter(SheetResults)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for i, wd := range columnWidths(t) {
		if err := sw.SetColWidth(i+1, i+1, wd); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	bold, _ := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true},
		Fill:      excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{headerFill}},
		Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}})
	head := make([]any, len(t.header))
	for i, h := range t.header {
		head[i] = excelize.Cell{Value: SafeCell(h), StyleID: bold}
	}
	if err := sw.SetRow("A1", head); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	vals := make([]any, len(t.header))
	for n, r := range t.rows {
		for i, c := range r.cells {
			if c.kind == cellText && c.text == "" {
				vals[i] = excelize.Cell{StyleID: styles.get(cellText, r.mark)}
				continue
			}
			vals[i] = excelize.Cell{Value: c.value(), StyleID: styles.get(c.kind, r.mark)}
		}
		cell, _ := excelize.CoordinatesToCellName(1, n+2)
		if err := sw.SetRow(cell, vals[:len(r.cells)]); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := writeSummary(f, t, styles); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := f.WriteTo(w); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// writeSummary writes the "Synthèse" sheet: the batch, its rows by check
// and status, its families and expected revenue per meal by bracket, the
// changes since the previous campaign.
func writeSummary(f *excelize.File, t *table, styles *workbookStyles) error {
	if _, err := f.NewSheet(SheetSummary); err != nil {
		return err
	}
	bold, _ := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	title, _ := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true, Size: 14}})
	money := styles.get(cellMoney, markNone)
	n := 0
	put := func(style int, vals ...any) error {
		n++
		for i, v := range vals {
			st := style
			switch x := v.(type) {
			case string:
				v = SafeCell(x)
			case euros:
				v, st = float64(x)/100, money
			}
			name, _ := excelize.CoordinatesToCellName(i+1, n)
			if err := f.SetCellValue(SheetSummary, name, v); err != nil {
				return err
			}
			if st != 0 {
				if err := f.SetCellStyle(SheetSummary, name, name, st); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var errs []error
	add := func(style int, vals ...any) { errs = append(errs, put(style, vals...)) }
	b := t.batch
	add(title, SummaryTitle)
	n++
	add(0, SummaryFile, path.Base(b.ObjectKey))
	add(0, SummaryBatch, b.ID)
	add(0, SummaryCampaign, b.Campaign)
	add(0, SummaryState, StateLabel(b.State))
	if t.manifest != nil && t.manifest.Tariff != "" {
		add(0, SummaryGrid, t.manifest.Tariff)
	}

	n++
	add(bold, SummaryByStatus)
	add(bold, SummaryCheck, HeaderStatus, SummaryRows)
	for _, c := range t.checks {
		counts := t.byStatus[c]
		for _, s := range schemas.Statuses {
			if k := counts[string(s)]; k > 0 {
				add(0, c.Label(), s.Label(), k)
			}
		}
		if k := counts[""]; k > 0 {
			add(0, c.Label(), ValueNotChecked, k)
		}
	}

	if len(t.tranches) > 0 {
		n++
		add(bold, SummaryByTranche)
		add(bold, HeaderTranche, SummaryFamilies, SummaryChildren, SummaryPrice, SummaryRevenue)
		var families, rows, revenue int64
		for _, name := range slices.Sorted(maps.Keys(t.tranches)) {
			s := t.tranches[name]
			vals := []any{name, int64(len(s.families)), s.rows, "", euros(s.revenue)}
			if s.price != nil {
				vals[3] = euros(*s.price)
			}
			add(0, vals...)
			families, rows, revenue = families+int64(len(s.families)), rows+s.rows, revenue+s.revenue
		}
		add(bold, SummaryTotal, families, rows, "", euros(revenue))
	}

	n++
	add(bold, SummaryChanges)
	if ch := changesOf(t.manifest); ch != nil {
		add(0, SummaryPrevious, ch.PreviousCampaign)
		add(bold, SummaryChange, SummaryRows)
		for _, k := range schemas.ChangeKinds {
			if c := ch.ByKind[k]; c > 0 {
				add(0, ChangeLabel(k), c)
			}
		}
		add(bold, SummaryTotal, ch.Total)
	} else {
		add(0, SummaryNoChanges)
	}

	n++
	add(bold, SummaryLegend)
	add(styles.get(cellText, markReview), SummaryLegendCheck)
	add(styles.get(cellText, markNotFound), SummaryLegendNF)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := f.SetColWidth(SheetSummary, "A", "A", 32); err != nil {
		return err
	}
	return f.SetColWidth(SheetSummary, "B", "E", 22)
}

// euros is an amount in cents, written as a price.
type euros int64

func changesOf(m *schemas.Manifest) *schemas.ManifestChanges {
	if m == nil {
		return nil
	}
	return m.Changes
}
