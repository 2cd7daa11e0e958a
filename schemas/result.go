package schemas

import "time"

// ResultSchemaVersion is written in every manifest; it changes when a column
// is added, removed, renamed or retyped. Version 3 renamed "check" (an SQL
// reserved word) to "check_name".
const ResultSchemaVersion = 3

// ResultRow is one row of a result Parquet file. Tags follow the rules that
// make DuckDB, Spark and pandas read the file with the right types: strings
// are UTF8, nullable columns are pointers marked OPTIONAL, timestamps carry
// both the converted and the logical type.
type ResultRow struct {
	BatchID       string  `parquet:"name=batch_id, type=BYTE_ARRAY, convertedtype=UTF8"`
	Tenant        string  `parquet:"name=tenant, type=BYTE_ARRAY, convertedtype=UTF8"`
	Campaign      string  `parquet:"name=campaign, type=BYTE_ARRAY, convertedtype=UTF8"`
	RowNumber     int64   `parquet:"name=row_number, type=INT64"`
	Reference     *string `parquet:"name=reference, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	Check         string  `parquet:"name=check_name, type=BYTE_ARRAY, convertedtype=UTF8"`
	Status        string  `parquet:"name=status, type=BYTE_ARRAY, convertedtype=UTF8"`
	ErrorCode     *string `parquet:"name=error_code, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	ErrorMessage  *string `parquet:"name=error_message, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	Provider      *string `parquet:"name=provider, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	QFValue       *int64  `parquet:"name=qf_value, type=INT64, repetitiontype=OPTIONAL"`
	QFYear        *int32  `parquet:"name=qf_year, type=INT32, repetitiontype=OPTIONAL"`
	QFMonth       *int32  `parquet:"name=qf_month, type=INT32, repetitiontype=OPTIONAL"`
	QFCalcYear    *int32  `parquet:"name=qf_calc_year, type=INT32, repetitiontype=OPTIONAL"`
	QFCalcMonth   *int32  `parquet:"name=qf_calc_month, type=INT32, repetitiontype=OPTIONAL"`
	ChildrenCount *int32  `parquet:"name=children_count, type=INT32, repetitiontype=OPTIONAL"`
	// Columns of the checks beyond the quotient familial (schema 2), null
	// for the other checks; dates are DATE (days since 1970-01-01).
	Beneficiary          *bool   `parquet:"name=beneficiary, type=BOOLEAN, repetitiontype=OPTIONAL"`
	BenefitSince         *int32  `parquet:"name=benefit_since, type=INT32, convertedtype=DATE, repetitiontype=OPTIONAL"`
	C2SWithParticipation *bool   `parquet:"name=c2s_with_participation, type=BOOLEAN, repetitiontype=OPTIONAL"`
	BenefitIncreased     *bool   `parquet:"name=benefit_increased, type=BOOLEAN, repetitiontype=OPTIONAL"`
	ScholarshipHolder    *bool   `parquet:"name=scholarship_holder, type=BOOLEAN, repetitiontype=OPTIONAL"`
	ScholarshipLevel     *string `parquet:"name=scholarship_level, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	ScholarshipStart     *int32  `parquet:"name=scholarship_start, type=INT32, convertedtype=DATE, repetitiontype=OPTIONAL"`
	ScholarshipMonths    *int32  `parquet:"name=scholarship_months, type=INT32, repetitiontype=OPTIONAL"`
	StudentEnrolled      *bool   `parquet:"name=student_enrolled, type=BOOLEAN, repetitiontype=OPTIONAL"`
	StudentRegime        *string `parquet:"name=student_regime, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	EstablishmentUAI     *string `parquet:"name=establishment_uai, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	JobseekerRegistered  *bool   `parquet:"name=jobseeker_registered, type=BOOLEAN, repetitiontype=OPTIONAL"`
	JobseekerCategory    *int32  `parquet:"name=jobseeker_category, type=INT32, repetitiontype=OPTIONAL"`
	JobseekerSince       *int32  `parquet:"name=jobseeker_since, type=INT32, convertedtype=DATE, repetitiontype=OPTIONAL"`
	PupilEnrolled        *bool   `parquet:"name=pupil_enrolled, type=BOOLEAN, repetitiontype=OPTIONAL"`
	SchoolYear           *string `parquet:"name=school_year, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	PupilStatus          *string `parquet:"name=pupil_status, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	BoardingRegime       *string `parquet:"name=boarding_regime, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	NeedsReview          bool    `parquet:"name=needs_review, type=BOOLEAN"`
	// Tranche and Tarif are the bracket and price per meal (euros) of the
	// tenant's tariff grid, recorded in the manifest.
	Tranche   *string `parquet:"name=tranche, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	Tarif     *int64  `parquet:"name=tarif, type=INT64, convertedtype=DECIMAL, scale=2, precision=18, repetitiontype=OPTIONAL"`
	RequestID *string `parquet:"name=request_id, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	Attempts  int32   `parquet:"name=attempts, type=INT32"`
	// CheckedAt is milliseconds since the Unix epoch, UTC.
	CheckedAt int64 `parquet:"name=checked_at, type=INT64, convertedtype=TIMESTAMP_MILLIS, logicaltype=TIMESTAMP, logicaltype.isadjustedtoutc=true, logicaltype.unit=MILLIS"`
}

// Row converts a Result into its Parquet row.
func (r Result) Row() ResultRow {
	return ResultRow{
		BatchID:       r.BatchID,
		Tenant:        r.Tenant,
		Campaign:      r.Campaign,
		RowNumber:     r.RowNumber,
		Reference:     optString(r.Reference),
		Check:         string(r.Check),
		Status:        string(r.Status),
		ErrorCode:     optString(r.ErrorCode),
		ErrorMessage:  optString(r.ErrorMessage),
		Provider:      optString(r.Provider),
		QFValue:       r.QFValue,
		QFYear:        r.QFYear,
		QFMonth:       r.QFMonth,
		QFCalcYear:    r.QFCalcYear,
		QFCalcMonth:   r.QFCalcMonth,
		ChildrenCount: r.ChildrenCount,

		Beneficiary:          r.Beneficiary,
		BenefitSince:         optDate(r.BenefitSince),
		C2SWithParticipation: r.C2SWithParticipation,
		BenefitIncreased:     r.BenefitIncreased,
		ScholarshipHolder:    r.ScholarshipHolder,
		ScholarshipLevel:     optString(r.ScholarshipLevel),
		ScholarshipStart:     optDate(r.ScholarshipStart),
		ScholarshipMonths:    r.ScholarshipMonths,
		StudentEnrolled:      r.StudentEnrolled,
		StudentRegime:        optString(r.StudentRegime),
		EstablishmentUAI:     optString(r.EstablishmentUAI),
		JobseekerRegistered:  r.JobseekerRegistered,
		JobseekerCategory:    r.JobseekerCategory,
		JobseekerSince:       optDate(r.JobseekerSince),
		PupilEnrolled:        r.PupilEnrolled,
		SchoolYear:           optString(r.SchoolYear),
		PupilStatus:          optString(r.PupilStatus),
		BoardingRegime:       optString(r.BoardingRegime),

		NeedsReview: r.NeedsReview,
		Tranche:     optString(r.Tranche),
		Tarif:       r.TarifCents,
		RequestID:   optString(r.RequestID),
		Attempts:    r.Attempts,
		CheckedAt:   r.CheckedAt.UTC().UnixMilli(),
	}
}

// optDate turns "YYYY-MM-DD" into days since 1970-01-01; nil when empty
// or not a date (the API's "0000-00-00" included).
func optDate(s string) *int32 {
	if s == "" {
		return nil // most results: no time.Parse error to make
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return nil
	}
	d := int32(t.Unix() / 86400)
	return &d
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ManifestTimeFormat is the format of a manifest's completed_at: RFC 3339
// in UTC, to the millisecond, so that the batch published last (a re-run)
// sorts last.
const ManifestTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Manifest states.
const (
	ManifestComplete  = "complete"
	ManifestCancelled = "cancelled"
)

// Manifest is the content of _manifest.json, written last in a batch's
// result folder: a part file is published only once listed here.
type Manifest struct {
	// SchemaVersion is the ResultSchemaVersion of the batch's parts.
	SchemaVersion int    `json:"schema_version"`
	BatchID       string `json:"batch_id"`
	Tenant        string `json:"tenant"`
	Campaign      string `json:"campaign"`
	// Checks are the batch's checks; every row has one result per check.
	Checks []Check `json:"checks"`
	// Source is the key of the roster verified; with Tenant and Campaign
	// it names the roster whose batches re-run one another.
	Source string `json:"source"`
	// RowsTotal is the input rows; ResultsTotal the result rows, one per
	// input row and check.
	RowsTotal    int64 `json:"rows_total"`
	ResultsTotal int64 `json:"results_total"`
	// RowsByStatus counts results by status, all checks together, and
	// ResultsByCheck by check and status.
	RowsByStatus   map[Status]int64           `json:"rows_by_status"`
	ResultsByCheck map[Check]map[Status]int64 `json:"results_by_check"`
	// Tariff is the version of the tariff grid that priced the QF
	// results, if the tenant has one.
	Tariff        string `json:"tariff,omitempty"`
	ProviderCalls int64  `json:"provider_calls"`
	// CallsSaved is how many results share another row's call (the same
	// person, check and period in the file).
	CallsSaved int64          `json:"calls_saved"`
	Files      []ManifestFile `json:"files"`
	// CompletedAt is when the batch was published (ManifestTimeFormat).
	CompletedAt string `json:"completed_at"`
	// State is ManifestComplete (one result per row and check) or
	// ManifestCancelled (the batch was cancelled: the rows answered
	// before are published, the others have no result).
	State string `json:"state"`
	// PricedFrom, for results re-priced with a new tariff grid (no call
	// made), is the batch whose results they re-price.
	PricedFrom string `json:"priced_from,omitempty"`
	// Changes summarises diff.parquet, written when the tenant has a
	// previous campaign's batch of the same roster; absent otherwise.
	Changes *ManifestChanges `json:"changes,omitempty"`
}

// ManifestFile is one published part file.
type ManifestFile struct {
	Key  string `json:"key"`
	Rows int64  `json:"rows"`
	Size int64  `json:"size"`
}
