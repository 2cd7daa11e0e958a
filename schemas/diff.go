package schemas

// DiffName is the file, under diffs/<tenant>/<campaign>/<batch>/ (up to
// result schema 2, beside the batch's part files), that lists what changed
// since the previous campaign's batch of the same roster.
const DiffName = "diff.parquet"

// Change kinds of a diff row, the most significant first: a row whose
// status changed is listed as "status" even if its bracket changed too.
const (
	// ChangeAdded: the row is in the new batch only.
	ChangeAdded = "added"
	// ChangeRemoved: the row was in the previous batch only.
	ChangeRemoved = "removed"
	// ChangeStatus: the result's status changed (e.g. ok → not_found).
	ChangeStatus = "status"
	// ChangeTranche: same status, another bracket of the tariff grid.
	ChangeTranche = "tranche"
	// ChangeTarif: same status and bracket, another price (a new grid).
	ChangeTarif = "tarif"
	// ChangeQF: same status, another quotient familial, when neither batch
	// was priced by a grid (no bracket to compare).
	ChangeQF = "qf"
)

// ChangeKinds lists the change kinds, most significant first.
var ChangeKinds = []string{ChangeAdded, ChangeRemoved, ChangeStatus, ChangeTranche, ChangeTarif, ChangeQF}

// DiffRow is one row of diff.parquet: one result (row and check) whose
// status, QF bracket (tranche) or price changed between the previous
// campaign's batch and this one, or that only one of them has. Old values
// are null for added rows, new values for removed ones. Tags follow the
// rules of ResultRow.
type DiffRow struct {
	BatchID          string `parquet:"name=batch_id, type=BYTE_ARRAY, convertedtype=UTF8"`
	PreviousBatchID  string `parquet:"name=previous_batch_id, type=BYTE_ARRAY, convertedtype=UTF8"`
	Tenant           string `parquet:"name=tenant, type=BYTE_ARRAY, convertedtype=UTF8"`
	Campaign         string `parquet:"name=campaign, type=BYTE_ARRAY, convertedtype=UTF8"`
	PreviousCampaign string `parquet:"name=previous_campaign, type=BYTE_ARRAY, convertedtype=UTF8"`
	// RowNumber is the row in this batch's file (null when removed);
	// PreviousRowNumber in the previous one (null when added).
	RowNumber         *int64  `parquet:"name=row_number, type=INT64, repetitiontype=OPTIONAL"`
	PreviousRowNumber *int64  `parquet:"name=previous_row_number, type=INT64, repetitiontype=OPTIONAL"`
	Reference         *string `parquet:"name=reference, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	Check             string  `parquet:"name=check_name, type=BYTE_ARRAY, convertedtype=UTF8"`
	// Change is one of ChangeKinds.
	Change     string  `parquet:"name=change, type=BYTE_ARRAY, convertedtype=UTF8"`
	OldStatus  *string `parquet:"name=old_status, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	NewStatus  *string `parquet:"name=new_status, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	OldQF      *int64  `parquet:"name=old_qf_value, type=INT64, repetitiontype=OPTIONAL"`
	NewQF      *int64  `parquet:"name=new_qf_value, type=INT64, repetitiontype=OPTIONAL"`
	OldTranche *string `parquet:"name=old_tranche, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	NewTranche *string `parquet:"name=new_tranche, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	// OldTarif and NewTarif are prices per meal, in euros (cents stored).
	OldTarif *int64 `parquet:"name=old_tarif, type=INT64, convertedtype=DECIMAL, scale=2, precision=18, repetitiontype=OPTIONAL"`
	NewTarif *int64 `parquet:"name=new_tarif, type=INT64, convertedtype=DECIMAL, scale=2, precision=18, repetitiontype=OPTIONAL"`
}

// ManifestChanges summarises a batch's diff.parquet in its manifest.
type ManifestChanges struct {
	// PreviousBatchID and PreviousCampaign name the batch compared with.
	PreviousBatchID  string `json:"previous_batch_id"`
	PreviousCampaign string `json:"previous_campaign"`
	// Key is diff.parquet's object key; Total its rows.
	Key   string `json:"key"`
	Total int64  `json:"total"`
	// ByKind counts the rows by change kind (see ChangeKinds).
	ByKind map[string]int64 `json:"by_kind"`
}
