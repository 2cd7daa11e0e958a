package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// rawMessage is one message of a topic as the broker stores it.
type rawMessage struct {
	topic     string
	partition int
	offset    int64
	key       []byte
	value     []byte
	headers   []kafkago.Header
}

// readTopic reads every message of topic, partition by partition, from its
// first offset to its last, without a consumer group.
func readTopic(t *testing.T, ctx context.Context, cfg kafka.Config, topic string) []rawMessage {
	t.Helper()
	addr, d := cfg.Brokers[0], cfg.Dialer()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out []rawMessage
	for _, p := range parts {
		pc, err := d.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := pc.ReadOffsets()
		if err != nil {
			pc.Close()
			t.Fatal(err)
		}
		if _, err := pc.Seek(first, kafkago.SeekAbsolute); err != nil {
			pc.Close()
			t.Fatal(err)
		}
		for off := first; off < last; {
			pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, err := pc.ReadMessage(10 << 20)
			if err != nil {
				pc.Close()
				t.Fatalf("%s/%d at %d of [%d, %d): %v", topic, p.ID, off, first, last, err)
			}
			out = append(out, rawMessage{topic: topic, partition: p.ID, offset: m.Offset, key: m.Key, value: m.Value, headers: m.Headers})
			off = m.Offset + 1
		}
		pc.Close()
	}
	return out
}

// TestRun_IdentitiesSealedInKafka runs a roster through apbatch run, then
// reads every message of the broker's topics raw: no family name, first
// name, birth date (YYYY-MM-DD, DD/MM/YYYY, YYYYMMDD), INE or France Travail
// username of the roster is in a key, value or header; every job carries
// its identity sealed.
func TestRun_IdentitiesSealedInKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")

	// The sandbox's people (so that the calls succeed), each with an INE
	// and a France Travail username, birth dates in both input formats.
	pop := sandbox.NewPopulation(40, 11)
	var roster strings.Builder
	roster.WriteString("reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance;ine;identifiant_france_travail\n")
	var needles []string
	add := func(vs ...string) {
		for _, v := range vs {
			needles = append(needles, v, strings.ToUpper(v))
		}
	}
	for i := 0; i < pop.Len(); i++ {
		per := pop.Person(i)
		date := per.Birth.Format("2006-01-02")
		if i%2 == 1 {
			date = per.Birth.Format("02/01/2006")
		}
		switch per.DateParts {
		case 2:
			date = per.Birth.Format("01/2006")
		case 1:
			date = per.Birth.Format("2006")
		}
		ine := fmt.Sprintf("%010dB", 3141592600+i)
		ft := fmt.Sprintf("demandeur.%04d.ft", i)
		fmt.Fprintf(&roster, "R-%03d;%s;%s;%s;%s;%s;%s;%s;%s\n", i, per.NomNaissance, strings.Join(per.Prenoms, " "), per.Sexe,
			date, per.Pays, per.Commune, ine, ft)
		add(per.NomNaissance, ine, ft)
		add(per.Prenoms...)
		if per.DateParts == 3 {
			add(per.Birth.Format("2006-01-02"), per.Birth.Format("02/01/2006"), per.Birth.Format("20060102"))
		}
	}
	rosterPath := filepath.Join(dir, "roster.csv")
	if err := os.WriteFile(rosterPath, []byte(roster.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", data, "--sandbox-population", "40", "--sandbox-seed", "11",
		"--checks", "qf,etudiant_boursier,france_travail", "--flush-interval", "500ms", "--summary-json", sumPath, rosterPath)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.RowsTotal != 40 || sum.RowsByStatus[schemas.StatusOK] == 0 || sum.RowsByStatus[schemas.StatusProviderError] != 0 {
		t.Fatalf("summary: %s", body)
	}
	// The local key apbatch run made, readable by its owner only.
	if st, err := os.Stat(filepath.Join(data, kekFileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", kekFileName, st, err)
	}

	// Reopen the broker the run left in --data-dir and read it raw.
	emb := &pipeline.Embedded{DataDir: data}
	if err := emb.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer emb.Close(context.WithoutCancel(ctx))
	addr := emb.Kafka()

	// A needle counts where it stands alone: not inside a base64 run, in
	// which a short one could appear by chance (5 characters or more: a
	// chance of about 1e-9 at each end of a base64 field).
	var patterns []*regexp.Regexp
	seen := map[string]bool{}
	for _, n := range needles {
		if len([]rune(n)) < 5 || seen[n] {
			continue
		}
		seen[n] = true
		patterns = append(patterns, regexp.MustCompile(`(^|[^A-Za-z0-9+/=])`+regexp.QuoteMeta(n)+`($|[^A-Za-z0-9+/=])`))
	}
	if len(patterns) < 150 {
		t.Fatalf("only %d needles", len(patterns))
	}
	leaks := func(topic string, msgs []rawMessage) {
		t.Helper()
		for _, m := range msgs {
			fields := map[string][]byte{"key": m.key, "value": m.value}
			for _, h := range m.headers {
				fields["header "+h.Key] = append([]byte(h.Key+"="), h.Value...)
			}
			for what, b := range fields {
				for _, p := range patterns {
					if loc := p.FindIndex(b); loc != nil {
						t.Errorf("%s/%d@%d: %s holds %q", topic, m.partition, m.offset, what, b[loc[0]:loc[1]])
					}
				}
			}
		}
	}

	jobs := readTopic(t, ctx, addr, schemas.TopicJobs)
	// One lookup per row and check: 40 × 3, fewer where rows share one.
	if len(jobs) < 40 {
		t.Fatalf("%d job messages", len(jobs))
	}
	kids := map[string]bool{}
	for _, m := range jobs {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(m.value, &raw); err != nil {
			t.Fatal(err)
		}
		if _, ok := raw["identity"]; ok {
			t.Errorf("job %d/%d has an identity in clear: %s", m.partition, m.offset, m.value)
		}
		job, err := schemas.DecodeJob(m.value)
		if err != nil {
			t.Fatal(err)
		}
		if job.Version != schemas.JobVersion || job.Sealed == nil || len(job.Sealed.Ciphertext) < 16 {
			t.Errorf("job %d/%d not sealed: %s", m.partition, m.offset, m.value)
		}
		if job.Sealed != nil {
			kids[job.Sealed.KeyID] = true
		}
	}
	if len(kids) != 1 {
		t.Errorf("jobs sealed under %v, want the one local key", kids)
	}
	leaks(schemas.TopicJobs, jobs)
	// The other topics: S3 notifications, and results (facts, no identity).
	uploads, results := readTopic(t, ctx, addr, schemas.TopicUploads), readTopic(t, ctx, addr, schemas.TopicResults)
	if len(uploads) == 0 || len(results) != 40*3 {
		t.Fatalf("%d upload and %d result messages", len(uploads), len(results))
	}
	leaks(schemas.TopicUploads, uploads)
	leaks(schemas.TopicResults, results)
	t.Logf("%d needles; %d job, %d upload, %d result messages read raw", len(patterns), len(jobs), len(uploads), len(results))

}
