package pipeline

import (
	"bufio"
	"cmp"
	"context"
	stdcsv "encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

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
		msg := "le lot " + id + " n'est pas terminé (état : " + b.State + ")"
		if b.Error != "" {
			msg += " : " + b.Error
		}
		return 0, errors.New(msg)
	}
	results, err := e.results(ctx, id)
	if err != nil {
		return 0, err
	}
	switch format {
	case FormatParquet:
		// In row order, then the batch's order of checks.
		rank := map[string]int{}
		for i, c := range b.CheckList() {
			rank[string(c)] = i
		}
		all := slices.SortedFunc(maps.Values(results), func(a, b schemas.ResultRow) int {
			return cmp.Or(cmp.Compare(a.RowNumber, b.RowNumber), cmp.Compare(rank[a.Check], rank[b.Check]))
		})
		return len(all), parquet.Encode(w, all)
	case FormatCSV, FormatXLSX:
	default:
		return 0, fmt.Errorf("format %q inconnu : csv, xlsx ou parquet", format)
	}
	header, rows, err := e.joined(ctx, b, results)
	if err != nil {
		return 0, err
	}
	if format == FormatCSV {
		return len(rows), writeCSV(w, header, rows)
	}
	return len(rows), writeXLSX(w, header, rows, e.TmpDir)
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
func (e *Exporter) joined(ctx context.Context, b ledger.Batch, results map[rowCheck]schemas.ResultRow) ([]string, [][]string, error) {
	// Exactly the version the batch verified: the rows are joined to its
	// results by number, so another file under the same name would give
	// one family's results to another.
	pin := PinnedVersion(b)
	if !Pinned(pin) {
		return nil, nil, fmt.Errorf("%w : %s", ErrInputReplaced, replacedHint)
	}
	body, info, err := e.S3.OpenVersion(ctx, b.ObjectKey, pin)
	if errors.Is(err, s3.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w : %s", ErrInputReplaced, replacedHint)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	defer body.Close()
	key, err := ParseIncomingKey(b.ObjectKey)
	if err != nil {
		return nil, nil, err
	}
	opts := csv.Options{Checks: b.CheckList(), Encoding: e.Encoding, Sheet: e.Sheet, TmpDir: e.TmpDir, Now: time.Now()}
	// The header the splitter read: the object's, set at upload.
	if opts.HeaderRow, err = HeaderRow(info.Metadata); err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	r, err := csv.OpenFile(ctx, body, key.File, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	checks := b.CheckList()
	header := append([]string(nil), r.Header()...)
	for _, c := range checks {
		header = append(header, resultColumns(c, len(checks) > 1)...)
	}
	var rows [][]string
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("export: %w", err)
		}
		rec := make([]string, len(r.Header()), len(header))
		copy(rec, row.Record)
		for _, c := range checks {
			rec = append(rec, resultValues(c, results[rowCheck{row.Number, string(c)}])...)
		}
		rows = append(rows, rec)
	}
	return header, rows, nil
}

// statusLabels are the statuses as agents read them.
var statusLabels = map[string]string{
	string(schemas.StatusOK): "trouvé", string(schemas.StatusNotFound): "non trouvé",
	string(schemas.StatusIdentityUnresolved): "identité non reconnue", string(schemas.StatusInvalidInput): "ligne à corriger",
	string(schemas.StatusProviderError): "erreur du fournisseur, à relancer", string(schemas.StatusUnauthorized): "jeton refusé",
}

// resultColumns names the columns a check adds.
func resultColumns(c schemas.Check, prefixed bool) []string {
	p := ""
	if prefixed {
		p = string(c) + " : "
	}
	if c == schemas.CheckQuotientFamilial {
		return []string{p + "Statut", p + "Quotient familial", p + "Tranche", p + "Tarif", p + "À vérifier", p + "Message"}
	}
	return []string{p + "Statut", p + "Résultat", p + "Message"}
}

// resultValues are a result's values under resultColumns.
func resultValues(c schemas.Check, r schemas.ResultRow) []string {
	msg := deref(r.ErrorMessage)
	status := statusLabels[r.Status]
	if r.Status == "" {
		status = "non vérifiée (lot annulé)"
	}
	if c == schemas.CheckQuotientFamilial {
		qf, tarif, review := "", "", ""
		if r.QFValue != nil {
			qf = strconv.FormatInt(*r.QFValue, 10)
		}
		if r.Tarif != nil {
			tarif = fmt.Sprintf("%d,%02d", *r.Tarif/100, *r.Tarif%100)
		}
		if r.NeedsReview {
			review = "oui"
		}
		return []string{status, qf, deref(r.Tranche), tarif, review, msg}
	}
	return []string{status, facts(r), msg}
}

// facts summarises a result's check-specific values in French.
func facts(r schemas.ResultRow) string {
	var parts []string
	yes := func(label string, v *bool) {
		if v != nil {
			if *v {
				parts = append(parts, label+" : oui")
			} else {
				parts = append(parts, label+" : non")
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
func writeCSV(w io.Writer, header []string, rows [][]string) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("\ufeff")
	cw := stdcsv.NewWriter(bw)
	cw.Comma = ';'
	cw.UseCRLF = true
	cw.Write(safeRecord(header))
	for _, r := range rows {
		cw.Write(safeRecord(r))
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return bw.Flush()
}

// writeXLSX writes one sheet, the header in bold and frozen, every cell a
// text cell through SafeCell (never a formula).
func writeXLSX(w io.Writer, header []string, rows [][]string, tmpDir string) error {
	f := excelize.NewFile(excelize.Options{TmpDir: tmpDir})
	defer f.Close()
	const sheet = "Résultats"
	f.SetSheetName("Sheet1", sheet)
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	bold, _ := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	row := func(n int, vals []string, style int) error {
		cells := make([]any, len(vals))
		for i, v := range vals {
			cells[i] = excelize.Cell{Value: SafeCell(v), StyleID: style}
		}
		cell, _ := excelize.CoordinatesToCellName(1, n)
		return sw.SetRow(cell, cells)
	}
	sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"})
	if err := row(1, header, bold); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for i, r := range rows {
		if err := row(i+2, r, 0); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := f.WriteTo(w); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}
