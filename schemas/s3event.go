package schemas

import (
	"bytes"
	"fmt"
	"strings"

	json "github.com/segmentio/encoding/json"
)

// The shapes of S3 event notifications DecodeS3Event accepts, besides the
// plain S3Event (Records[]) that AWS S3 sends to SQS, SNS and Lambda (and
// bridges copy to Kafka), MinIO and versitygw send to Kafka, and Ceph RGW to
// its endpoints.

// EventBridgeEvent is an S3 event as AWS S3 sends it to EventBridge (and
// EventBridge rules or pipes forward it to Kafka): one object per event, its
// kind in DetailType ("Object Created", "Object Deleted", ...).
type EventBridgeEvent struct {
	Version    string            `json:"version"`
	ID         string            `json:"id"`
	DetailType string            `json:"detail-type"`
	Source     string            `json:"source"`
	Time       string            `json:"time"`
	Region     string            `json:"region"`
	Detail     EventBridgeDetail `json:"detail"`
}

// EventBridgeDetail is the detail of an EventBridgeEvent from S3.
type EventBridgeDetail struct {
	Bucket S3Bucket          `json:"bucket"`
	Object EventBridgeObject `json:"object"`
	// Reason is the API call that created the object: "PutObject",
	// "POST Object", "CopyObject" or "CompleteMultipartUpload".
	Reason string `json:"reason"`
}

// EventBridgeObject is the object of an EventBridgeDetail. Key is
// URL-encoded as in Records[] notifications.
type EventBridgeObject struct {
	Key       string `json:"key"`
	Size      int64  `json:"size"`
	ETag      string `json:"etag"`
	VersionID string `json:"version-id"`
	Sequencer string `json:"sequencer"`
}

// SNSNotification is an Amazon SNS message envelope, as an SQS queue
// subscribed to the topic receives it (unless raw delivery is on): the S3
// notification is the JSON text in Message.
type SNSNotification struct {
	Type    string `json:"Type"`
	Message string `json:"Message"`
}

// Emitters whose Records[] carry the object key as stored rather than
// URL-encoded. versitygw (checked on v1.8.0) fills s3.configurationId with
// "<target>-global" and bucket.arn with "arn:aws:s3:::/<bucket>/<key>"; AWS
// and MinIO put the configuration's own id and "arn:aws:s3:::<bucket>".
var rawKeyConfigurationIDs = []string{"kafka-global", "nats-global", "webhook-global", "rabbitmq-global"}

// KeyEncoded reports whether the record's object key is URL-encoded (spaces
// as '+', other reserved bytes as %XX), as AWS S3 and MinIO send it, rather
// than raw, as versitygw sends it. A key holding a space, a control
// character or a non-ASCII byte cannot be URL-encoded, whoever sent it.
func (r S3EventRecord) KeyEncoded() bool {
	if strings.ContainsFunc(r.S3.Object.Key, func(c rune) bool { return c <= ' ' || c >= 0x7f }) {
		return false
	}
	cid := r.S3.ConfigurationID
	for _, raw := range rawKeyConfigurationIDs {
		if cid == raw && strings.HasPrefix(r.S3.Bucket.ARN, "arn:aws:s3:::/") {
			return false
		}
	}
	return true
}

// maxEnvelopeDepth bounds how many envelopes (SNS, JSON text, arrays)
// DecodeS3Event opens around one notification.
const maxEnvelopeDepth = 4

// DecodeS3Event decodes an S3 event notification in any shape apbatch
// accepts: Records[] (AWS, MinIO, versitygw), an EventBridge event (turned
// into one record named "ObjectCreated:Put", "ObjectCreated:Copy", ... or
// "ObjectDeleted:..." after its detail-type), either wrapped in an SNS
// envelope or in a JSON string, and a JSON array of such events (records
// concatenated). Test events (s3:TestEvent) and other JSON objects decode to
// an event without records; only text that is not JSON is an error.
func DecodeS3Event(b []byte) (S3Event, error) {
	return decodeS3Event(b, 0)
}

func decodeS3Event(b []byte, depth int) (S3Event, error) {
	b = bytes.TrimSpace(b)
	if depth > maxEnvelopeDepth {
		return S3Event{}, fmt.Errorf("schemas: S3 event: more than %d nested envelopes", maxEnvelopeDepth)
	}
	if len(b) == 0 {
		return S3Event{}, fmt.Errorf("schemas: S3 event: empty message")
	}
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return S3Event{}, fmt.Errorf("schemas: S3 event: %w", err)
		}
		return decodeS3Event([]byte(s), depth+1)
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return S3Event{}, fmt.Errorf("schemas: S3 event: %w", err)
		}
		var all S3Event
		for _, it := range items {
			ev, err := decodeS3Event(it, depth+1)
			if err != nil {
				return S3Event{}, err
			}
			all.Records = append(all.Records, ev.Records...)
		}
		return all, nil
	}
	var probe struct {
		Records    []S3EventRecord    `json:"Records"`
		Type       string             `json:"Type"`
		Message    *string            `json:"Message"`
		DetailType string             `json:"detail-type"`
		Source     string             `json:"source"`
		Detail     *EventBridgeDetail `json:"detail"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return S3Event{}, fmt.Errorf("schemas: S3 event: %w", err)
	}
	switch {
	case len(probe.Records) > 0:
		return S3Event{Records: probe.Records}, nil
	case probe.Type == "Notification" && probe.Message != nil:
		return decodeS3Event([]byte(*probe.Message), depth+1)
	case probe.Source == "aws.s3" && probe.Detail != nil:
		var ev EventBridgeEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			return S3Event{}, fmt.Errorf("schemas: S3 event: %w", err)
		}
		return S3Event{Records: []S3EventRecord{ev.Record()}}, nil
	}
	return S3Event{}, nil
}

// eventBridgeReasons maps EventBridge "reason" values to the suffix of the
// Records[] event name of the same call.
var eventBridgeReasons = map[string]string{
	"PutObject":               "Put",
	"POST Object":             "Post",
	"CopyObject":              "Copy",
	"CompleteMultipartUpload": "CompleteMultipartUpload",
}

// Record returns the event as a Records[] record: "Object Created" with
// reason "CopyObject" becomes "ObjectCreated:Copy".
func (e EventBridgeEvent) Record() S3EventRecord {
	kind := strings.ReplaceAll(e.DetailType, " ", "")
	op := eventBridgeReasons[e.Detail.Reason]
	if op == "" {
		op = strings.ReplaceAll(e.Detail.Reason, " ", "")
	}
	name := kind
	if op != "" {
		name += ":" + op
	}
	return S3EventRecord{
		EventVersion: e.Version, EventSource: "aws:s3", EventTime: e.Time, EventName: name,
		S3: S3Entity{Bucket: e.Detail.Bucket, Object: S3Object(e.Detail.Object)},
	}
}

// ObjectCreated reports whether the record announces a new object (or a new
// version of one): "ObjectCreated:*" with or without the "s3:" prefix
// (AWS omits it, MinIO and versitygw write it). Copies and completed
// multipart uploads count; tagging, ACL, restore, replication and removal
// events do not.
func (r S3EventRecord) ObjectCreated() bool {
	name := strings.TrimPrefix(r.EventName, "s3:")
	kind, op, _ := strings.Cut(name, ":")
	if kind != "ObjectCreated" {
		return false
	}
	switch op {
	case "", "*", "Put", "Post", "Copy", "CompleteMultipartUpload":
		return true
	}
	// MinIO's PutRetention and PutLegalHold change an existing version.
	return false
}
