package schemas

import (
	"fmt"
	"time"

	json "github.com/segmentio/encoding/json"
)

// Kafka topics used by apbatch.
const (
	// TopicUploads carries S3 event notifications (AWS Records[] JSON).
	TopicUploads = "apbatch.uploads"
	// TopicJobs carries one Job per distinct lookup, keyed by tenant so that
	// all jobs of one token land on one partition (one budget owner).
	TopicJobs = "apbatch.jobs"
	// TopicResults carries one Result per input row, keyed by batch id.
	TopicResults = "apbatch.results"
)

// Message versions. A reader refuses a message whose version it does not know.
// Job version 2 carries its identity sealed (Job.Sealed); version 1 jobs
// (identity in clear) still decode, but workers drop every job in clear
// without a call (see workers.Pool.AllowClearJobs).
const (
	JobVersion    = 2
	ResultVersion = 1
)

// S3Event is an S3 event notification as AWS S3 (through EventBridge or SQS
// bridges), MinIO and versitygw emit it.
type S3Event struct {
	Records []S3EventRecord `json:"Records"`
}

// S3EventRecord is one record of an S3Event.
type S3EventRecord struct {
	EventVersion string `json:"eventVersion,omitempty"`
	EventSource  string `json:"eventSource,omitempty"`
	// EventTime is kept as sent (ISO 8601 with AWS, RFC 3339 elsewhere):
	// apbatch does not rely on it.
	EventTime string   `json:"eventTime,omitempty"`
	EventName string   `json:"eventName"`
	S3        S3Entity `json:"s3"`
}

// S3Entity names the bucket and the object of an S3EventRecord.
type S3Entity struct {
	// ConfigurationID names the bucket's notification configuration.
	ConfigurationID string   `json:"configurationId,omitempty"`
	Bucket          S3Bucket `json:"bucket"`
	Object          S3Object `json:"object"`
}

// S3Bucket is the bucket of an S3Entity.
type S3Bucket struct {
	Name string `json:"name"`
	ARN  string `json:"arn,omitempty"`
}

// S3Object is the object of an S3Entity. Key is URL-encoded as in AWS
// notifications (see S3EventRecord.KeyEncoded for emitters that do not).
// ETag may be quoted; VersionID is "" or "null" when the bucket is not
// versioned.
type S3Object struct {
	Key       string `json:"key"`
	Size      int64  `json:"size,omitempty"`
	ETag      string `json:"eTag,omitempty"`
	VersionID string `json:"versionId,omitempty"`
	Sequencer string `json:"sequencer,omitempty"`
}

// RowRef names one input row that a Job answers for.
type RowRef struct {
	// Number is the 1-based data row number (the header is not counted).
	Number int64 `json:"n"`
	// Reference is the collectivité's own id for the row, if any.
	Reference string `json:"ref,omitempty"`
}

// Job is one provider call to make: a distinct lookup and every row of the
// batch it answers. Messages carry the tenant, never the token.
type Job struct {
	Version   int    `json:"v"`
	BatchID   string `json:"batch_id"`
	Tenant    string `json:"tenant"`
	Campaign  string `json:"campaign"`
	Check     Check  `json:"check"`
	LookupID  string `json:"lookup_id"`
	Recipient string `json:"recipient"`
	// Period is the QF month asked for; zero means the API's default.
	Period Period `json:"period,omitempty"`
	// Identity is the person's parameters. Producers seal it (Sealed) and
	// the wire then has no "identity"; a reader fills it back on opening.
	Identity Identity `json:"identity"`
	// Sealed is Identity encrypted for transit (see SealedIdentity).
	Sealed *SealedIdentity `json:"sealed,omitempty"`
	Rows   []RowRef        `json:"rows"`
}

// Validate checks the fields a worker relies on.
func (j Job) Validate() error {
	switch {
	case j.Version != JobVersion && j.Version != 1, j.Version == 1 && j.Sealed != nil:
		return fmt.Errorf("schemas: job version %d, want %d", j.Version, JobVersion)
	case j.BatchID == "" || j.Tenant == "" || j.LookupID == "":
		return fmt.Errorf("schemas: job lacks batch_id, tenant or lookup_id")
	case len(j.Rows) == 0:
		return fmt.Errorf("schemas: job %s has no rows", j.LookupID)
	}
	return nil
}

// Result is the outcome of one input row, as produced to TopicResults. It
// carries no name or birth date.
type Result struct {
	Version      int    `json:"v"`
	BatchID      string `json:"batch_id"`
	Tenant       string `json:"tenant"`
	Campaign     string `json:"campaign"`
	RowNumber    int64  `json:"row_number"`
	Reference    string `json:"reference,omitempty"`
	Check        Check  `json:"check"`
	Status       Status `json:"status"`
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	// Provider is "CNAF" or "MSA" when known.
	Provider      string `json:"provider,omitempty"`
	QFValue       *int64 `json:"qf_value,omitempty"`
	QFYear        *int32 `json:"qf_year,omitempty"`
	QFMonth       *int32 `json:"qf_month,omitempty"`
	QFCalcYear    *int32 `json:"qf_calc_year,omitempty"`
	QFCalcMonth   *int32 `json:"qf_calc_month,omitempty"`
	ChildrenCount *int32 `json:"children_count,omitempty"`
	// NeedsReview is set when the value cannot be used as is (QF 0 or null).
	NeedsReview bool `json:"needs_review"`
	// RequestID is the API's X-Request-ID of the last call.
	RequestID string `json:"request_id,omitempty"`
	// Attempts is how many provider calls the lookup took (0 for rows
	// rejected before any call).
	Attempts int32 `json:"attempts"`
	// Primary is true on exactly one row of a lookup: the one that counts
	// the lookup's provider calls in summaries.
	Primary   bool      `json:"primary,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
	// Tranche and TarifCents are the canteen bracket and price per meal
	// (cents) the tenant's tariff grid gives a QF result.
	Tranche    string `json:"tranche,omitempty"`
	TarifCents *int64 `json:"tarif_cents,omitempty"`
	// Facts are the values of the checks beyond the quotient familial.
	Facts
}

// Facts are the check-specific values of a result. Each is set only by the
// checks its comment names, and only when the API returned it: scopes may
// mask any field of an answer. Dates are "YYYY-MM-DD".
type Facts struct {
	// Beneficiary is est_beneficiaire (C2S, RSA, prime d'activité, AAH, ASF).
	Beneficiary *bool `json:"beneficiary,omitempty"`
	// BenefitSince is date_debut_droit of the same checks.
	BenefitSince string `json:"benefit_since,omitempty"`
	// C2SWithParticipation is avec_participation (C2S with a contribution).
	C2SWithParticipation *bool `json:"c2s_with_participation,omitempty"`
	// BenefitIncreased is avec_majoration (RSA, prime d'activité).
	BenefitIncreased *bool `json:"benefit_increased,omitempty"`
	// ScholarshipHolder is est_boursier (etudiant_boursier, scolarite).
	ScholarshipHolder *bool `json:"scholarship_holder,omitempty"`
	// ScholarshipLevel is the échelon: "0bis" to "7" (CNOUS), "1" to "6" (MEN).
	ScholarshipLevel string `json:"scholarship_level,omitempty"`
	// ScholarshipStart and ScholarshipMonths are the CNOUS payment period
	// (date_rentree, duree).
	ScholarshipStart  string `json:"scholarship_start,omitempty"`
	ScholarshipMonths *int32 `json:"scholarship_months,omitempty"`
	// StudentEnrolled says whether one of the MESRI admissions is an
	// enrolment (est_inscrit); StudentRegime is that admission's
	// regime_formation code (RF1 to RF7).
	StudentEnrolled *bool  `json:"student_enrolled,omitempty"`
	StudentRegime   string `json:"student_regime,omitempty"`
	// EstablishmentUAI is the UAI of the student's establishment (MESRI)
	// or of the pupil's school (MEN).
	EstablishmentUAI string `json:"establishment_uai,omitempty"`
	// JobseekerRegistered says whether the France Travail registration is
	// current (no end date, or one not yet past); JobseekerCategory is its
	// category (1 to 5) and JobseekerSince its start date.
	JobseekerRegistered *bool  `json:"jobseeker_registered,omitempty"`
	JobseekerCategory   *int32 `json:"jobseeker_category,omitempty"`
	JobseekerSince      string `json:"jobseeker_since,omitempty"`
	// PupilEnrolled is est_scolarise, SchoolYear annee_scolaire,
	// PupilStatus statut_eleve.code and BoardingRegime regime_pensionnat.code
	// (scolarite).
	PupilEnrolled  *bool  `json:"pupil_enrolled,omitempty"`
	SchoolYear     string `json:"school_year,omitempty"`
	PupilStatus    string `json:"pupil_status,omitempty"`
	BoardingRegime string `json:"boarding_regime,omitempty"`
}

// Validate checks the fields the writer relies on.
func (r Result) Validate() error {
	switch {
	case r.Version != ResultVersion:
		return fmt.Errorf("schemas: result version %d, want %d", r.Version, ResultVersion)
	case r.BatchID == "" || r.RowNumber < 1:
		return fmt.Errorf("schemas: result lacks batch_id or row_number")
	case !r.Status.Valid():
		return fmt.Errorf("schemas: result row %d: unknown status %q", r.RowNumber, r.Status)
	case !r.Check.Valid():
		return fmt.Errorf("schemas: result row %d: unknown check %q", r.RowNumber, r.Check)
	}
	return nil
}

// DecodeJob decodes and validates a job message value.
func DecodeJob(b []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return j, fmt.Errorf("schemas: decode job: %w", err)
	}
	return j, j.Validate()
}

// DecodeResult decodes and validates a result message value.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("schemas: decode result: %w", err)
	}
	return r, r.Validate()
}

// DecodeIdentity decodes an identity as a sealed job carries it (see
// EncodeIdentity). The identity's strings never alias b. An error may
// quote b: it must not reach a log.
func DecodeIdentity(b []byte) (Identity, error) {
	var id Identity
	err := json.Unmarshal(b, &id)
	return id, err
}
