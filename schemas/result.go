package schemas

// ResultSchemaVersion is written in every manifest; it changes when a column
// is added, removed or retyped.
const ResultSchemaVersion = 1

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
	Check         string  `parquet:"name=check, type=BYTE_ARRAY, convertedtype=UTF8"`
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
	NeedsReview   bool    `parquet:"name=needs_review, type=BOOLEAN"`
	RequestID     *string `parquet:"name=request_id, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	Attempts      int32   `parquet:"name=attempts, type=INT32"`
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
		NeedsReview:   r.NeedsReview,
		RequestID:     optString(r.RequestID),
		Attempts:      r.Attempts,
		CheckedAt:     r.CheckedAt.UTC().UnixMilli(),
	}
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Manifest is the content of _manifest.json, written last in a batch's
// result folder: a part file is published only once listed here.
type Manifest struct {
	SchemaVersion int              `json:"schema_version"`
	BatchID       string           `json:"batch_id"`
	Tenant        string           `json:"tenant"`
	Campaign      string           `json:"campaign"`
	Check         Check            `json:"check"`
	Source        string           `json:"source"`
	RowsTotal     int64            `json:"rows_total"`
	RowsByStatus  map[Status]int64 `json:"rows_by_status"`
	ProviderCalls int64            `json:"provider_calls"`
	Files         []ManifestFile   `json:"files"`
	CompletedAt   string           `json:"completed_at"`
}

// ManifestFile is one published part file.
type ManifestFile struct {
	Key  string `json:"key"`
	Rows int64  `json:"rows"`
	Size int64  `json:"size"`
}
