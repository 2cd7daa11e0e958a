package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/pipeline/ledger"

	"github.com/apbatch/apbatch/schemas"
)

type countingWriter struct{ msgs []kafkago.Message }

func (c *countingWriter) WriteMessages(_ context.Context, msgs ...kafkago.Message) error {
	c.msgs = append(c.msgs, msgs...)
	return nil
}

// TestBatcher_ResumesAfterProduced: a split resumed after a crash skips the
// jobs it had produced and records its progress after every write.
func TestBatcher_ResumesAfterProduced(t *testing.T) {
	w := &countingWriter{}
	b := newBatcher(w, 4)
	b.skip = 6
	var progress []int
	b.onFlush = func(_ context.Context, n int) error { progress = append(progress, n); return nil }
	ctx := context.Background()
	for i := 0; i < 15; i++ {
		if err := b.add(ctx, kafkago.Message{Offset: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.msgs) != 9 || w.msgs[0].Offset != 6 || b.sent != 15 {
		t.Fatalf("%d sent from %d, counted %d", len(w.msgs), w.msgs[0].Offset, b.sent)
	}
	if len(progress) != 3 || progress[0] != 10 || progress[2] != 15 {
		t.Fatalf("progress %v", progress)
	}
}

// TestLookups: rows sharing a lookup come back together, the second pass's
// row first, once; a lookup of one row holds no reference between passes.
func TestLookups(t *testing.T) {
	a, b, c := [16]byte{1}, [16]byte{2}, [16]byte{3}
	l := newLookups()
	for _, r := range []struct {
		k [16]byte
		n int64
	}{{a, 1}, {b, 2}, {a, 3}, {c, 4}, {a, 5}, {b, 6}} {
		l.add(r.k, r.n, fmt.Sprintf("R%d", r.n))
	}
	if len(l.more) != 2 {
		t.Fatalf("%d lookups hold rows, want 2 (a and b)", len(l.more))
	}
	for _, tc := range []struct {
		k    [16]byte
		want []int64
	}{{a, []int64{1, 3, 5}}, {b, []int64{2, 6}}, {c, []int64{4}}, {a, nil}} {
		first := schemas.RowRef{Reference: "first"}
		if tc.want != nil {
			first.Number = tc.want[0]
		}
		rows, ok := l.take(tc.k, first)
		if ok != (tc.want != nil) || len(rows) != len(tc.want) {
			t.Fatalf("lookup %v: %v %v, want rows %v", tc.k[0], rows, ok, tc.want)
		}
		for i, r := range rows {
			wantRef := fmt.Sprintf("R%d", tc.want[i])
			if i == 0 {
				wantRef = "first"
			}
			if r.Number != tc.want[i] || r.Reference != wantRef {
				t.Fatalf("lookup %v row %d = %+v, want %d %s", tc.k[0], i, r, tc.want[i], wantRef)
			}
		}
	}
	if len(l.first) != 0 {
		t.Fatalf("%d lookups left", len(l.first))
	}
}

// failingWriter refuses every write with err.
type failingWriter struct{ err error }

func (f failingWriter) WriteMessages(context.Context, ...kafkago.Message) error { return f.err }

// TestIngester_NoPoisonPill: a file whose split fails the same way every
// time ends failed, with its reason, instead of stopping the ingest role
// on every restart.
func TestIngester_NoPoisonPill(t *testing.T) {
	roster := "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n" +
		"R1;MARTIN;Léa;F;2015-04-02;99100;75056\n"
	for _, tc := range []struct {
		name  string
		err   error
		tries int // Start calls that return the error before the batch fails
		want  string
	}{
		{"message too large", kafkago.WriteErrors{kafkago.MessageSizeTooLarge}, 0, "plus grand que"},
		{"error on every try", errors.New("boom"), maxSplitAttempts, "a échoué 3 fois"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			client, store := bucketAndLedger(t)
			in := &Ingester{Ledger: store, Bucket: "apbatch", Log: zerolog.Nop(), Recipient: "13002526500013",
				Splitter: &Splitter{S3: client, Ledger: store, Jobs: failingWriter{tc.err}, Results: &countingWriter{}, Log: zerolog.Nop()}}
			const key = "incoming/ville/2026-09/cantine.csv"
			obj, err := client.Put(ctx, key, strings.NewReader(roster), int64(len(roster)), "text/csv")
			if err != nil {
				t.Fatal(err)
			}
			up := Upload{Bucket: "apbatch", Key: IncomingKey{Tenant: "ville", Campaign: "2026-09", File: "cantine.csv"}, Version: ObjectVersion(obj.VersionID, obj.ETag, "")}
			for i := 0; i < tc.tries; i++ {
				if err := in.Start(ctx, up); err == nil {
					t.Fatalf("try %d: no error", i+1)
				}
			}
			if err := in.Start(ctx, up); err != nil {
				t.Fatalf("the last try still fails: %v", err)
			}
			bs, err := store.Batches(ctx)
			if err != nil || len(bs) != 1 || bs[0].State != ledger.StateFailed || !strings.Contains(bs[0].Error, tc.want) {
				t.Fatalf("batches %+v, %v", bs, err)
			}
		})
	}
}

// FuzzEachCheck: whatever the file, every row the reader yields gets
// exactly one outcome per check of the batch from the splitter (a lookup
// or an invalid result), so that the writer's rows × checks is reached.
func FuzzEachCheck(f *testing.F) {
	hdr := "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance;identifiant_france_travail\n"
	f.Add(hdr + "R1;MARTIN;Léa;F;2015-04-02;99100;75056;FT1\n")
	f.Add(hdr + "R1,MARTIN,Léa,F\nR2;\"MAR\"TIN;Léa;F;;;;\n" + hdr)
	f.Add(hdr + "R1;DU\x00RAND;Léa;F;2015-04-02;99100;75056;FT1\r\nR2;\"open\n")
	checks := []schemas.Check{schemas.CheckQuotientFamilial, schemas.CheckFranceTravail, schemas.CheckC2S}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := csv.Open(strings.NewReader(in), "fuzz.csv", csv.Options{Checks: checks})
		if err != nil {
			return
		}
		for i := 0; i < 1000; i++ {
			row, err := r.Next()
			if err != nil {
				return
			}
			var got []schemas.Check
			if err := eachCheck(row, checks, func(in *csv.CheckInput, problems []string) error {
				got = append(got, in.Check)
				if len(problems) > 0 && joinProblems(problems) == "" {
					t.Fatalf("line %d: an invalid result without a message", row.Line)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, checks) {
				t.Fatalf("line %d: outcomes for %v, want %v", row.Line, got, checks)
			}
		}
	})
}

func TestJoinProblems_Bounded(t *testing.T) {
	long := []string{strings.Repeat("é", 2000)}
	if msg := joinProblems(long); len(msg) > maxProblems || !utf8.ValidString(msg) {
		t.Fatalf("%d bytes, valid %v", len(msg), utf8.ValidString(msg))
	}
}

// TestIngester_HeaderRow: the header row an upload's metadata names (as
// Submit stores it) is where the splitter reads the header; rows keep the
// file's line numbers; a value that is no line number fails the batch in
// French.
func TestIngester_HeaderRow(t *testing.T) {
	const roster = "nom;prenom\n" + // a table above the roster's: the header found is wrong
		"Responsable;Cantine\n" +
		"reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n" +
		"R1;MARTIN;Léa;F;2015-04-02;99100;75056\n"
	for _, tc := range []struct {
		name string
		meta map[string]string
		jobs int
		want string // the failed batch's message; "" when it splits
	}{
		{name: "found", meta: nil, want: "colonnes manquantes"},
		{name: "given", meta: UploadMetadata(nil, 3), jobs: 1},
		{name: "past the end", meta: UploadMetadata(nil, 9), want: "(ligne 9) est vide ou absente"},
		{name: "not a number", meta: map[string]string{MetaHeaderRow: "trois"}, want: "« trois ») n'est pas un numéro de ligne"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			client, store := bucketAndLedger(t)
			jobs := &countingWriter{}
			in := &Ingester{Ledger: store, Bucket: "apbatch", Log: zerolog.Nop(), Recipient: "13002526500013",
				Splitter: &Splitter{S3: client, Ledger: store, Jobs: jobs, Results: &countingWriter{}, Log: zerolog.Nop()}}
			const key = "incoming/ville/2026-09/cantine.csv"
			obj, err := client.PutMeta(ctx, key, strings.NewReader(roster), int64(len(roster)), "text/csv", tc.meta)
			if err != nil {
				t.Fatal(err)
			}
			up := Upload{Bucket: "apbatch", Key: IncomingKey{Tenant: "ville", Campaign: "2026-09", File: "cantine.csv"}, Version: ObjectVersion(obj.VersionID, obj.ETag, "")}
			if err := in.Start(ctx, up); err != nil {
				t.Fatal(err)
			}
			bs, err := store.Batches(ctx)
			if err != nil || len(bs) != 1 {
				t.Fatalf("batches %+v, %v", bs, err)
			}
			if tc.want != "" {
				if bs[0].State != ledger.StateFailed || !strings.Contains(bs[0].Error, tc.want) {
					t.Fatalf("batch %s: %q, want failed with %q", bs[0].State, bs[0].Error, tc.want)
				}
				return
			}
			if bs[0].State == ledger.StateFailed || len(jobs.msgs) != tc.jobs {
				t.Fatalf("batch %s (%s), %d jobs; want %d", bs[0].State, bs[0].Error, len(jobs.msgs), tc.jobs)
			}
		})
	}
}

func TestUploadMetadata(t *testing.T) {
	for _, tc := range []struct {
		name      string
		checks    []schemas.Check
		headerRow int
		want      map[string]string
	}{
		{"none", nil, 0, nil},
		{"checks", []schemas.Check{schemas.CheckQuotientFamilial}, 0, map[string]string{MetaChecks: "quotient_familial"}},
		{"header row", nil, 4, map[string]string{MetaHeaderRow: "4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := UploadMetadata(tc.checks, tc.headerRow)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if n, err := HeaderRow(got); err != nil || n != tc.headerRow {
				t.Fatalf("HeaderRow = %d, %v; want %d", n, err, tc.headerRow)
			}
		})
	}
}
