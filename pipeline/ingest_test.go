package pipeline

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// Notifications as each emitter sends them (trimmed of fields apbatch does
// not read only where noted).
const (
	// AWS S3 → SQS (or SNS raw delivery, Lambda, a Kafka bridge), version
	// 2.1 of the structure: the key URL-encoded, spaces as '+'.
	awsPut = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-3",
		"eventTime":"2026-09-01T08:30:15.123Z","eventName":"ObjectCreated:Put",
		"userIdentity":{"principalId":"AWS:AIDAEXAMPLE"},"requestParameters":{"sourceIPAddress":"192.0.2.10"},
		"responseElements":{"x-amz-request-id":"C3D13FE58DE4C810","x-amz-id-2":"FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
		"s3":{"s3SchemaVersion":"1.0","configurationId":"apbatch-incoming",
		"bucket":{"name":"apbatch","ownerIdentity":{"principalId":"A3NL1KOZZKExample"},"arn":"arn:aws:s3:::apbatch"},
		"object":{"key":"incoming/ville/2026-09/liste+rentr%C3%A9e+%282%29+a%2Bb.csv","size":1024,
		"eTag":"d41d8cd98f00b204e9800998ecf8427e","sequencer":"0055AED6DCD90281E5"}}}]}`
	awsVersioned = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
		"s3":{"bucket":{"name":"apbatch","arn":"arn:aws:s3:::apbatch"},"object":{"key":"incoming/ville/2026-09/liste.csv",
		"size":10,"eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"096fKKXTRTtl3on89fVO.nfljtsv6qko","sequencer":"0055AED6DCD90281E5"}}}]}`
	awsSuspended = `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/liste.csv","eTag":"aaaa","versionId":"null"}}}]}`
	awsMultipart = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:CompleteMultipartUpload",
		"s3":{"bucket":{"name":"apbatch"},"object":{"key":"incoming/ville/2026-09/gros.xlsx","size":52428800,
		"eTag":"b54357faf0632cce46e942fa68356b38-10","sequencer":"0055AED6DCD90281E6"}}}]}`
	awsCopy = `{"Records":[{"eventName":"ObjectCreated:Copy","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/copie.csv","eTag":"cccc"}}}]}`
	awsDelete = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectRemoved:Delete",
		"s3":{"bucket":{"name":"apbatch"},"object":{"key":"incoming/ville/2026-09/liste.csv","sequencer":"0055AED6DCD90281E7"}}}]}`
	awsTagging = `{"Records":[{"eventVersion":"2.3","eventName":"ObjectTagging:Put","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/liste.csv","eTag":"aaaa"}}}]}`
	awsOutside = `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"results/ville/2026-09/b123/part-00001.parquet","eTag":"aaaa"}}}]}`
	awsConfig = `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"config/ville/tarifs.yaml","eTag":"aaaa"}}}]}`
	awsDotDot = `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/..%2F..%2Fconfig/tarifs.yaml","eTag":"aaaa"}}}]}`
	awsDotDotFile = `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/..","eTag":"aaaa"}}}]}`
	awsBadEscape = `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/a%zz.csv","eTag":"aaaa"}}}]}`
	awsNoVersion = `{"Records":[{"eventName":"ObjectCreated:Post","s3":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/form.csv","sequencer":"0055AED6DCD90281E8"}}}]}`
	// AWS S3 → SNS → SQS: the notification is the text of Message.
	awsViaSNS = `{"Type":"Notification","MessageId":"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"TopicArn":"arn:aws:sns:eu-west-3:123456789012:apbatch-uploads","Subject":"Amazon S3 Notification",
		"Message":"{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"apbatch\"},\"object\":{\"key\":\"incoming/ville/2026-09/sns+file.csv\",\"eTag\":\"eeee\"}}}]}",
		"Timestamp":"2026-09-01T08:30:16.000Z","SignatureVersion":"1"}`
	// AWS S3 → EventBridge (→ a rule or pipe to Kafka).
	eventBridgePut = `{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created",
		"source":"aws.s3","account":"123456789012","time":"2026-09-01T08:30:15Z","region":"eu-west-3",
		"resources":["arn:aws:s3:::apbatch"],"detail":{"version":"0","bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/liste+2026.csv","size":5,"etag":"b1946ac92492d2347c6235b4d2611184",
		"version-id":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e","sequencer":"00617F08299329D189"},
		"request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"192.0.2.10","reason":"PutObject"}}`
	eventBridgeMultipart = `{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/gros.csv","etag":"4af981f98d22a0b9979da24b259e5e42-12"},"reason":"CompleteMultipartUpload"}}`
	eventBridgeDelete = `{"version":"0","detail-type":"Object Deleted","source":"aws.s3","detail":{"bucket":{"name":"apbatch"},
		"object":{"key":"incoming/ville/2026-09/liste.csv"},"reason":"DeleteObject","deletion-type":"Permanently Deleted"}}`
	// MinIO → Kafka: EventName and Key beside Records; the key
	// URL-encoded, slashes included.
	minioPut = `{"EventName":"s3:ObjectCreated:Put","Key":"apbatch/incoming/ville/2026-09/liste 2026.csv",
		"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-09-01T08:30:15.482Z",
		"eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"minioadmin"},
		"requestParameters":{"principalId":"minioadmin","region":"","sourceIPAddress":"127.0.0.1"},
		"responseElements":{"x-amz-id-2":"dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
		"x-amz-request-id":"17F0F6A7D5A9B0C2","x-minio-deployment-id":"5a2c1b0e","x-minio-origin-endpoint":"http://127.0.0.1:9000"},
		"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"apbatch",
		"ownerIdentity":{"principalId":"minioadmin"},"arn":"arn:aws:s3:::apbatch"},
		"object":{"key":"incoming%2Fville%2F2026-09%2Fliste+2026.csv","size":1024,"eTag":"5fc7298143efe1276d39a3466d4e255f",
		"contentType":"text/csv","userMetadata":{"content-type":"text/csv"},"sequencer":"17F0F6A7D5B1E2A4"}},
		"source":{"host":"127.0.0.1","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7.0.70 mc/RELEASE"}}]}`
	minioGet = `{"EventName":"s3:ObjectAccessed:Get","Key":"apbatch/incoming/ville/2026-09/liste.csv","Records":[{"eventName":"s3:ObjectAccessed:Get",
		"s3":{"configurationId":"Config","bucket":{"name":"apbatch","arn":"arn:aws:s3:::apbatch"},"object":{"key":"incoming%2Fville%2F2026-09%2Fliste.csv","eTag":"aaaa"}}}]}`
	minioRetention = `{"EventName":"s3:ObjectCreated:PutRetention","Records":[{"eventName":"s3:ObjectCreated:PutRetention",
		"s3":{"bucket":{"name":"apbatch"},"object":{"key":"incoming%2Fville%2F2026-09%2Fliste.csv","eTag":"aaaa","versionId":"v1"}}}]}`
	// versitygw v1.8.0 → Kafka, as captured: the key raw (space, accent and
	// '+' as stored), the ETag quoted, versionId null, the sequencer a
	// counter of the process.
	versitygwPut = `{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-12-01T23:57:58Z",
		"eventName":"s3:ObjectCreated:Put","userIdentity":{"PrincipalId":"AK"},"requestParameters":{"sourceIPAddress":"127.0.0.1"},
		"responseElements":{"x-amz-request-id":"","x-amz-id-2":""},"s3":{"s3SchemaVersion":"1.0","configurationId":"webhook-global",
		"bucket":{"name":"apbatch","ownerIdentity":{"PrincipalId":"AK"},"arn":"arn:aws:s3:::/apbatch/incoming/ville/2026-09/cantine rentrée+1 (v2).csv"},
		"object":{"key":"incoming/ville/2026-09/cantine rentrée+1 (v2).csv","size":8,"eTag":"\"5bdbb6e3e9f1873bc57aec2932291506\"","versionId":null,"sequencer":"1"}},
		"glacierEventData":{"restoreEventData":{"lifecycleRestorationExpiryTime":"","lifecycleRestoreStorageClass":""}}}]}`
	// A '+' alone does not tell a raw key from an encoded one: versitygw's
	// configuration id and ARN do.
	versitygwPlus = `{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","eventName":"s3:ObjectCreated:Put",
		"s3":{"configurationId":"kafka-global","bucket":{"name":"apbatch","arn":"arn:aws:s3:::/apbatch/incoming/ville/2026-09/a+b.csv"},
		"object":{"key":"incoming/ville/2026-09/a+b.csv","eTag":"\"5bdb\"","versionId":null,"sequencer":"7"}}}]}`
	versitygwMultipart = `{"Records":[{"eventName":"s3:ObjectCreated:CompleteMultipartUpload",
		"s3":{"configurationId":"webhook-global","bucket":{"name":"apbatch","arn":"arn:aws:s3:::/apbatch/incoming/ville/2026-09/gros.csv"},
		"object":{"key":"incoming/ville/2026-09/gros.csv","size":0,"eTag":"\"9b2cf535f27731c974343645a3985328-3\"","versionId":"","sequencer":"8"}}}]}`
	versitygwTest = `{"Bucket":"Test-Bucket","Event":"s3:TestEvent","Service":"S3","Time":"2026-12-01T23:57:58Z"}`
	awsTest       = `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-09-01T08:30:15.000Z","Bucket":"apbatch","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YCPZNl2ly3RmntDzvIoE"}`
)

func TestUploadOf(t *testing.T) {
	type want struct {
		key, version string
		err          error // ErrNotCreated, ErrNotIncoming or refused
	}
	refused := errors.New("refused")
	for _, tc := range []struct {
		name string
		msg  string
		want []want
	}{
		{"aws put, encoded key", awsPut, []want{{key: "incoming/ville/2026-09/liste rentrée (2) a+b.csv", version: "d41d8cd98f00b204e9800998ecf8427e"}}},
		{"aws versioned", awsVersioned, []want{{key: "incoming/ville/2026-09/liste.csv", version: "096fKKXTRTtl3on89fVO.nfljtsv6qko"}}},
		{"aws versioning suspended", awsSuspended, []want{{key: "incoming/ville/2026-09/liste.csv", version: "aaaa"}}},
		{"aws multipart", awsMultipart, []want{{key: "incoming/ville/2026-09/gros.xlsx", version: "b54357faf0632cce46e942fa68356b38-10"}}},
		{"aws copy", awsCopy, []want{{key: "incoming/ville/2026-09/copie.csv", version: "cccc"}}},
		{"aws post without etag", awsNoVersion, []want{{key: "incoming/ville/2026-09/form.csv", version: ""}}},
		{"aws delete", awsDelete, []want{{err: ErrNotCreated}}},
		{"aws tagging", awsTagging, []want{{err: ErrNotCreated}}},
		{"aws results key", awsOutside, []want{{err: ErrNotIncoming}}},
		{"aws config key", awsConfig, []want{{err: ErrNotIncoming}}},
		{"aws encoded ..", awsDotDot, []want{{err: refused}}},
		{"aws .. file", awsDotDotFile, []want{{err: refused}}},
		{"aws bad escape", awsBadEscape, []want{{err: refused}}},
		{"aws via sns", awsViaSNS, []want{{key: "incoming/ville/2026-09/sns file.csv", version: "eeee"}}},
		{"aws test event", awsTest, nil},
		{"eventbridge put", eventBridgePut, []want{{key: "incoming/ville/2026-09/liste 2026.csv", version: "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"}}},
		{"eventbridge multipart", eventBridgeMultipart, []want{{key: "incoming/ville/2026-09/gros.csv", version: "4af981f98d22a0b9979da24b259e5e42-12"}}},
		{"eventbridge delete", eventBridgeDelete, []want{{err: ErrNotCreated}}},
		{"eventbridge as json text", mustQuote(eventBridgePut), []want{{key: "incoming/ville/2026-09/liste 2026.csv", version: "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"}}},
		{"minio put", minioPut, []want{{key: "incoming/ville/2026-09/liste 2026.csv", version: "5fc7298143efe1276d39a3466d4e255f"}}},
		{"minio get", minioGet, []want{{err: ErrNotCreated}}},
		{"minio retention", minioRetention, []want{{err: ErrNotCreated}}},
		{"versitygw put, raw key", versitygwPut, []want{{key: "incoming/ville/2026-09/cantine rentrée+1 (v2).csv", version: "5bdbb6e3e9f1873bc57aec2932291506"}}},
		{"versitygw raw plus", versitygwPlus, []want{{key: "incoming/ville/2026-09/a+b.csv", version: "5bdb"}}},
		{"versitygw multipart", versitygwMultipart, []want{{key: "incoming/ville/2026-09/gros.csv", version: "9b2cf535f27731c974343645a3985328-3"}}},
		{"versitygw test event", versitygwTest, nil},
		{"array of events", "[" + awsCopy + "," + awsDelete + "]", []want{{key: "incoming/ville/2026-09/copie.csv", version: "cccc"}, {err: ErrNotCreated}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := schemas.DecodeS3Event([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(ev.Records) != len(tc.want) {
				t.Fatalf("%d records, want %d", len(ev.Records), len(tc.want))
			}
			for i, rec := range ev.Records {
				up, err := UploadOf(rec)
				w := tc.want[i]
				switch {
				case w.err == refused:
					if err == nil || errors.Is(err, ErrNotCreated) || errors.Is(err, ErrNotIncoming) {
						t.Fatalf("record %d: err = %v, want a refusal", i, err)
					}
					if bytes.Contains([]byte(err.Error()), []byte("incoming/ville")) {
						t.Fatalf("record %d: refusal repeats the key: %v", i, err)
					}
				case w.err != nil:
					if !errors.Is(err, w.err) {
						t.Fatalf("record %d: err = %v, want %v", i, err, w.err)
					}
				default:
					if err != nil {
						t.Fatalf("record %d: %v", i, err)
					}
					if up.Key.String() != w.key || up.Version != w.version || up.Bucket != "apbatch" {
						t.Fatalf("record %d: got %q version %q bucket %q, want %q version %q", i, up.Key, up.Version, up.Bucket, w.key, w.version)
					}
				}
			}
		})
	}
}

func mustQuote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestDecodeS3Event_NotJSON(t *testing.T) {
	for _, msg := range []string{"", "not json", `{"Records":`, `"{\"Records\":"`} {
		if _, err := schemas.DecodeS3Event([]byte(msg)); err == nil {
			t.Errorf("DecodeS3Event(%q): no error", msg)
		}
	}
}

// TestIngester_OneBatchPerVersion: redelivered and duplicated events, the
// same content uploaded again and an event without a version start one
// batch per object version; a new content starts another.
func TestIngester_OneBatchPerVersion(t *testing.T) {
	ctx := context.Background()
	client, store := bucketAndLedger(t)
	jobs, results := &countingWriter{}, &countingWriter{}
	in := &Ingester{Ledger: store, Bucket: "apbatch", Log: zerolog.Nop(), Recipient: "13002526500013",
		Splitter: &Splitter{S3: client, Ledger: store, Jobs: jobs, Results: results, Log: zerolog.Nop()}}

	const key = "incoming/ville/2026-09/cantine rentrée+1 (v2).csv"
	roster := "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n" +
		"R1;MARTIN;Léa;F;2015-04-02;99100;75056\n"
	put := func(body string) s3.ObjectInfo {
		t.Helper()
		obj, err := client.Put(ctx, key, bytes.NewReader([]byte(body)), int64(len(body)), "text/csv")
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	event := func(etag, seq string) []byte {
		return []byte(`{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"configurationId":"kafka-global",
			"bucket":{"name":"apbatch","arn":"arn:aws:s3:::/apbatch/` + key + `"},
			"object":{"key":"` + key + `","eTag":"\"` + etag + `\"","versionId":null,"sequencer":"` + seq + `"}}}]}`)
	}
	batches := func() []ledger.Batch {
		t.Helper()
		bs, err := store.Batches(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return bs
	}

	first := put(roster)
	for _, msg := range [][]byte{
		event(first.ETag, "1"),
		event(first.ETag, "1"), // redelivered
		event(first.ETag, "1"), // the emitter restarted: its sequencer starts again at 1
		[]byte(`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},"object":{"key":"` +
			"incoming/ville/2026-09/cantine+rentr%C3%A9e%2B1+%28v2%29.csv" + `"}}}]}`), // no version: looked up
		event(put(roster).ETag, "2"), // the same content uploaded again
	} {
		if err := in.Handle(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	bs := batches()
	if len(bs) != 1 || bs[0].ObjectKey != key || bs[0].ObjectVersion != first.ETag || bs[0].State != ledger.StateSplit {
		t.Fatalf("batches = %+v, want one split batch of %s", bs, first.ETag)
	}
	if len(jobs.msgs) != 1 {
		t.Fatalf("%d jobs produced, want 1", len(jobs.msgs))
	}

	// Announced without a version, then deleted before it is read.
	gone := []byte(`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},"object":{"key":"incoming/ville/2026-09/parti.csv"}}}]}`)
	if err := in.Handle(ctx, gone); err != nil {
		t.Fatalf("event for a deleted object: %v", err)
	}
	if bs := batches(); len(bs) != 1 {
		t.Fatalf("%d batches after an event for a deleted object", len(bs))
	}

	second := put(roster + "R2;DURAND;Hugo;M;2014-01-20;99100;75056\n")
	if err := in.Handle(ctx, event(second.ETag, "3")); err != nil {
		t.Fatal(err)
	}
	if bs := batches(); len(bs) != 2 || bs[1].ObjectVersion != second.ETag {
		t.Fatalf("batches = %+v, want a second one for %s", bs, second.ETag)
	}
}

// FuzzS3Event: whatever arrives on the events topic, reading it never
// panics, and every upload it accepts is one the ledger can store and the
// bucket can serve: a key under incoming/ that parses back to itself, plain
// tenant and campaign names, text without control characters.
func FuzzS3Event(f *testing.F) {
	for _, seed := range []string{awsPut, awsVersioned, awsSuspended, awsMultipart, awsCopy, awsDelete, awsTagging,
		awsOutside, awsConfig, awsDotDot, awsDotDotFile, awsBadEscape, awsNoVersion, awsViaSNS, eventBridgePut,
		eventBridgeMultipart, eventBridgeDelete, minioPut, minioGet, minioRetention, versitygwPut, versitygwPlus,
		versitygwMultipart, versitygwTest, awsTest, `{"Records":null}`, `not json`, ``} {
		f.Add([]byte(seed))
	}
	name := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	f.Fuzz(func(t *testing.T, value []byte) {
		ev, err := schemas.DecodeS3Event(value)
		if err != nil {
			return
		}
		for _, rec := range ev.Records {
			up, err := UploadOf(rec)
			if err != nil {
				continue
			}
			key := up.Key.String()
			again, err := ParseIncomingKey(key)
			if err != nil || again != up.Key {
				t.Fatalf("key %q: parsed again %+v, %v; first %+v", key, again, err, up.Key)
			}
			if !name.MatchString(up.Key.Tenant) || !name.MatchString(up.Key.Campaign) {
				t.Fatalf("key %q: tenant %q or campaign %q is not a plain name", key, up.Key.Tenant, up.Key.Campaign)
			}
			if f := up.Key.File; f == "" || f == "." || f == ".." || strings.Contains(f, "/") {
				t.Fatalf("key %q: bad file name %q accepted", key, f)
			}
			for field, s := range map[string]string{"key": key, "bucket": up.Bucket, "version": up.Version} {
				if !storable(s) {
					t.Fatalf("%s %q accepted: not valid UTF-8 or has a control character", field, s)
				}
			}
			if again, err := UploadOf(rec); err != nil || !reflect.DeepEqual(again, up) {
				t.Fatalf("read twice: %+v then %+v, %v", up, again, err)
			}
		}
	})
}

// TestIngester_RefusesVersionsTheBucketLacks: an event naming a version
// the bucket does not hold (a version id of an unversioned bucket, an ETag
// that is not the object's, a version only "run --force" makes up) starts
// no batch and is not an error (its offset is committed); the event of the
// object as S3 has it still starts one, pinned to its ETag.
func TestIngester_RefusesVersionsTheBucketLacks(t *testing.T) {
	ctx := context.Background()
	client, store := bucketAndLedger(t)
	jobs, results := &countingWriter{}, &countingWriter{}
	in := &Ingester{Ledger: store, Bucket: "apbatch", Log: zerolog.Nop(), Recipient: "13002526500013",
		Splitter: &Splitter{S3: client, Ledger: store, Jobs: jobs, Results: results, Log: zerolog.Nop()}}
	const key = "incoming/ville/2026-09/cantine.csv"
	roster := "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n" +
		"R1;MARTIN;Léa;F;2015-04-02;99100;75056\n"
	obj, err := client.Put(ctx, key, bytes.NewReader([]byte(roster)), int64(len(roster)), "text/csv")
	if err != nil {
		t.Fatal(err)
	}
	event := func(etag, versionID string) []byte {
		return []byte(`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"apbatch"},
			"object":{"key":"` + key + `","eTag":"` + etag + `","versionId":"` + versionID + `"}}}]}`)
	}
	for _, tc := range []struct {
		name, etag, versionID string
	}{
		{"version id unknown to the bucket", obj.ETag, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"},
		{"version id alone", "", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"},
		{"another content's etag", "0123456789abcdef0123456789abcdef", ""},
		{"version made up by run --force", obj.ETag, ForcedVersionPrefix + "1767225600000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := in.Handle(ctx, event(tc.etag, tc.versionID)); err != nil {
				t.Fatalf("Handle: %v (the event would be read again forever)", err)
			}
			if bs, err := store.Batches(ctx); err != nil || len(bs) != 0 {
				t.Fatalf("batches = %+v, %v; want none", bs, err)
			}
			if len(jobs.msgs) != 0 {
				t.Fatalf("%d jobs produced", len(jobs.msgs))
			}
		})
	}
	if err := in.Handle(ctx, event(obj.ETag, "")); err != nil {
		t.Fatal(err)
	}
	bs, err := store.Batches(ctx)
	if err != nil || len(bs) != 1 || bs[0].ObjectETag != obj.ETag || bs[0].State != ledger.StateSplit {
		t.Fatalf("batches = %+v, %v; want one split, pinned to %s", bs, err, obj.ETag)
	}
}

// TestIngester_ReplacedBeforeSplit: a batch recorded but not split yet
// (a crash in between) whose file was replaced since fails with a message
// for agents; it never splits the new file's rows under the old batch.
func TestIngester_ReplacedBeforeSplit(t *testing.T) {
	ctx := context.Background()
	client, store := bucketAndLedger(t)
	jobs := &countingWriter{}
	in := &Ingester{Ledger: store, Bucket: "apbatch", Log: zerolog.Nop(), Recipient: "13002526500013",
		Splitter: &Splitter{S3: client, Ledger: store, Jobs: jobs, Results: &countingWriter{}, Log: zerolog.Nop()}}
	const key = "incoming/ville/2026-09/cantine.csv"
	put := func(body string) s3.ObjectInfo {
		t.Helper()
		obj, err := client.Put(ctx, key, bytes.NewReader([]byte(body)), int64(len(body)), "text/csv")
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	header := "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n"
	first := put(header + "R1;MARTIN;Léa;F;2015-04-02;99100;75056\n")
	b, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: "ville", Campaign: "2026-09", Checks: "quotient_familial", Bucket: "apbatch",
		ObjectKey: key, ObjectVersion: first.ETag, ObjectETag: first.ETag, Recipient: "13002526500013"})
	if err != nil {
		t.Fatal(err)
	}
	put(header + "R9;DURAND;Hugo;M;2014-01-20;99100;75056\n")
	ik, _ := ParseIncomingKey(key)
	if err := in.Start(ctx, Upload{Bucket: "apbatch", Key: ik, Version: first.ETag, ETag: first.ETag}); err != nil {
		t.Fatal(err)
	}
	got, err := store.Batch(ctx, b.ID)
	if err != nil || got.State != ledger.StateFailed || !strings.Contains(got.Error, "remplacé ou supprimé") || len(jobs.msgs) != 0 {
		t.Fatalf("batch %+v, %v; %d jobs; want failed, no job", got, err, len(jobs.msgs))
	}
}

func TestPinnedVersion(t *testing.T) {
	const etag = "5bdbb6e3e9f1873bc57aec2932291506"
	for _, tc := range []struct {
		name          string
		version, etag string
		want          s3.Version
	}{
		{"unversioned", etag, etag, s3.Version{ETag: etag}},
		{"versioned", "096fKKXTRTtl3on89fVO.nfljtsv6qko", etag, s3.Version{ID: "096fKKXTRTtl3on89fVO.nfljtsv6qko", ETag: etag}},
		{"forced", ForcedVersionPrefix + "17", etag, s3.Version{ETag: etag}},
		{"forced, recorded before etags", ForcedVersionPrefix + "17", "", s3.Version{}},
		{"etag, recorded before etags", etag, "", s3.Version{ETag: etag}},
		{"multipart etag, recorded before etags", etag + "-12", "", s3.Version{ETag: etag + "-12"}},
		{"version id, recorded before etags", "096fKKXTRTtl3on89fVO.nfljtsv6qko", "", s3.Version{ID: "096fKKXTRTtl3on89fVO.nfljtsv6qko"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PinnedVersion(ledger.Batch{ObjectVersion: tc.version, ObjectETag: tc.etag})
			if got != tc.want {
				t.Fatalf("PinnedVersion = %+v, want %+v", got, tc.want)
			}
		})
	}
}
