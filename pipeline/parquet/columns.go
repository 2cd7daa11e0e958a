package parquet

import (
	"fmt"

	"github.com/xitongsys/parquet-go/common"
	"github.com/xitongsys/parquet-go/layout"
	"github.com/xitongsys/parquet-go/schema"

	"github.com/apbatch/apbatch/schemas"
)

// rowRef is what Writer hands parquet-go for each row: a struct holding a
// pointer, which an interface holds without a copy of the row, and whose
// size parquet-go estimates as the row's own.
type rowRef struct{ r *schemas.ResultRow }

// filler sets one column of rows in t, whose definition and repetition
// levels are len(rows) zeros.
type filler func(t *layout.Table, rows []any)

// columns fills every column of schemas.ResultRow, by Parquet name. It does
// what parquet-go's reflection marshaller does for this flat schema
// (TestMarshalRows_SameTables proves it) without reflection: a value per
// row, definition level 1 when an optional value is set, 0 otherwise.
var columns = map[string]filler{
	"batch_id":               required(func(r *schemas.ResultRow) string { return r.BatchID }),
	"tenant":                 required(func(r *schemas.ResultRow) string { return r.Tenant }),
	"campaign":               required(func(r *schemas.ResultRow) string { return r.Campaign }),
	"row_number":             required(func(r *schemas.ResultRow) int64 { return r.RowNumber }),
	"reference":              optional(func(r *schemas.ResultRow) *string { return r.Reference }),
	"check_name":             required(func(r *schemas.ResultRow) string { return r.Check }),
	"status":                 required(func(r *schemas.ResultRow) string { return r.Status }),
	"error_code":             optional(func(r *schemas.ResultRow) *string { return r.ErrorCode }),
	"error_message":          optional(func(r *schemas.ResultRow) *string { return r.ErrorMessage }),
	"provider":               optional(func(r *schemas.ResultRow) *string { return r.Provider }),
	"qf_value":               optional(func(r *schemas.ResultRow) *int64 { return r.QFValue }),
	"qf_year":                optional(func(r *schemas.ResultRow) *int32 { return r.QFYear }),
	"qf_month":               optional(func(r *schemas.ResultRow) *int32 { return r.QFMonth }),
	"qf_calc_year":           optional(func(r *schemas.ResultRow) *int32 { return r.QFCalcYear }),
	"qf_calc_month":          optional(func(r *schemas.ResultRow) *int32 { return r.QFCalcMonth }),
	"children_count":         optional(func(r *schemas.ResultRow) *int32 { return r.ChildrenCount }),
	"beneficiary":            optional(func(r *schemas.ResultRow) *bool { return r.Beneficiary }),
	"benefit_since":          optional(func(r *schemas.ResultRow) *int32 { return r.BenefitSince }),
	"c2s_with_participation": optional(func(r *schemas.ResultRow) *bool { return r.C2SWithParticipation }),
	"benefit_increased":      optional(func(r *schemas.ResultRow) *bool { return r.BenefitIncreased }),
	"scholarship_holder":     optional(func(r *schemas.ResultRow) *bool { return r.ScholarshipHolder }),
	"scholarship_level":      optional(func(r *schemas.ResultRow) *string { return r.ScholarshipLevel }),
	"scholarship_start":      optional(func(r *schemas.ResultRow) *int32 { return r.ScholarshipStart }),
	"scholarship_months":     optional(func(r *schemas.ResultRow) *int32 { return r.ScholarshipMonths }),
	"student_enrolled":       optional(func(r *schemas.ResultRow) *bool { return r.StudentEnrolled }),
	"student_regime":         optional(func(r *schemas.ResultRow) *string { return r.StudentRegime }),
	"establishment_uai":      optional(func(r *schemas.ResultRow) *string { return r.EstablishmentUAI }),
	"jobseeker_registered":   optional(func(r *schemas.ResultRow) *bool { return r.JobseekerRegistered }),
	"jobseeker_category":     optional(func(r *schemas.ResultRow) *int32 { return r.JobseekerCategory }),
	"jobseeker_since":        optional(func(r *schemas.ResultRow) *int32 { return r.JobseekerSince }),
	"pupil_enrolled":         optional(func(r *schemas.ResultRow) *bool { return r.PupilEnrolled }),
	"school_year":            optional(func(r *schemas.ResultRow) *string { return r.SchoolYear }),
	"pupil_status":           optional(func(r *schemas.ResultRow) *string { return r.PupilStatus }),
	"boarding_regime":        optional(func(r *schemas.ResultRow) *string { return r.BoardingRegime }),
	"needs_review":           required(func(r *schemas.ResultRow) bool { return r.NeedsReview }),
	"tranche":                optional(func(r *schemas.ResultRow) *string { return r.Tranche }),
	"tarif":                  optional(func(r *schemas.ResultRow) *int64 { return r.Tarif }),
	"request_id":             optional(func(r *schemas.ResultRow) *string { return r.RequestID }),
	"attempts":               required(func(r *schemas.ResultRow) int32 { return r.Attempts }),
	"checked_at":             required(func(r *schemas.ResultRow) int64 { return r.CheckedAt }),
}

// boxer turns values into interfaces, reusing the last one when a value
// repeats (a batch's id, its check, a status): no allocation then.
type boxer[T comparable] struct {
	last  T
	boxed any
}

func (b *boxer[T]) box(v T) any {
	if b.boxed == nil || v != b.last {
		b.last, b.boxed = v, v
	}
	return b.boxed
}

func required[T comparable](get func(*schemas.ResultRow) T) filler {
	return func(t *layout.Table, rows []any) {
		var b boxer[T]
		for i, o := range rows {
			t.Values[i] = b.box(get(o.(rowRef).r))
		}
	}
}

func optional[T comparable](get func(*schemas.ResultRow) *T) filler {
	return func(t *layout.Table, rows []any) {
		var b boxer[T]
		for i, o := range rows {
			if p := get(o.(rowRef).r); p != nil {
				t.Values[i] = b.box(*p)
				t.DefinitionLevels[i] = 1
			}
		}
	}
}

// leaf is one column of the file: its table's template and its filler.
type leaf struct {
	path string
	tmpl layout.Table
	fill filler
}

// rowMarshaller is a parquet-go MarshalFunc for rowRef values.
type rowMarshaller struct{ leaves []leaf }

// newRowMarshaller maps every leaf of sh (schemas.ResultRow's schema) to
// its filler; a column without one is a schema change this file missed.
func newRowMarshaller(sh *schema.SchemaHandler) (*rowMarshaller, error) {
	m := &rowMarshaller{}
	for i, el := range sh.SchemaElements {
		if el.GetNumChildren() > 0 {
			continue
		}
		name := sh.Infos[i].ExName
		fill, ok := columns[name]
		if !ok {
			return nil, fmt.Errorf("parquet: column %s has no encoder", name)
		}
		path := sh.IndexMap[int32(i)]
		t := layout.NewEmptyTable()
		t.Path = common.StrToPath(path)
		t.MaxDefinitionLevel, _ = sh.MaxDefinitionLevel(t.Path)
		t.MaxRepetitionLevel, _ = sh.MaxRepetitionLevel(t.Path)
		t.RepetitionType = el.GetRepetitionType()
		t.Schema = sh.SchemaElements[sh.MapIndex[path]]
		t.Info = sh.Infos[i]
		m.leaves = append(m.leaves, leaf{path: path, tmpl: *t, fill: fill})
	}
	if len(m.leaves) != len(columns) {
		return nil, fmt.Errorf("parquet: %d columns in the schema, %d encoders", len(m.leaves), len(columns))
	}
	return m, nil
}

// marshal builds every column's table from rows (rowRef values).
func (m *rowMarshaller) marshal(rows []any, _ *schema.SchemaHandler) (*map[string]*layout.Table, error) {
	res := make(map[string]*layout.Table, len(m.leaves))
	// Levels that are all zero (every repetition level of this flat
	// schema, the definition levels of required columns) share one slice:
	// parquet-go only reads them once a table is built.
	zeros := make([]int32, len(rows))
	for _, l := range m.leaves {
		t := l.tmpl
		t.Path = append([]string(nil), l.tmpl.Path...)
		t.Values = make([]any, len(rows))
		t.DefinitionLevels = zeros
		if t.MaxDefinitionLevel > 0 {
			t.DefinitionLevels = make([]int32, len(rows))
		}
		t.RepetitionLevels = zeros
		l.fill(&t, rows)
		res[l.path] = &t
	}
	return &res, nil
}
