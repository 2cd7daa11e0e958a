// Package parquet writes apbatch result rows as Parquet files with
// xitongsys/parquet-go's writer. The column types come from the tags of
// schemas.ResultRow, chosen so that DuckDB, Spark and pandas read strings as
// strings, nulls as nulls and checked_at as a UTC timestamp; result rows are
// turned into columns by hand-written encoders (columns.go), not reflection.
package parquet

import (
	"errors"
	"fmt"
	"io"

	"github.com/xitongsys/parquet-go-source/buffer"
	pqparquet "github.com/xitongsys/parquet-go/parquet"
	"github.com/xitongsys/parquet-go/reader"
	"github.com/xitongsys/parquet-go/writer"

	"github.com/apbatch/apbatch/schemas"
)

// rowGroupSize bounds the memory a writer holds before flushing a row group.
const rowGroupSize = 16 << 20

// chunkRows is how many rows Writer copies into one allocation: parquet-go
// holds rows until it encodes a few hundred of them.
const chunkRows = 512

// Writer encodes result rows into one Parquet file written to an io.Writer.
// It is not safe for concurrent use.
type Writer struct {
	pw     *writer.ParquetWriter
	chunk  []schemas.ResultRow // rows handed to pw; never grown, so pointers stay put
	rows   int64
	closed bool
	err    error
}

// NewWriter starts a Snappy-compressed Parquet file on w.
func NewWriter(w io.Writer) (*Writer, error) {
	pw, err := writer.NewParquetWriterFromWriter(w, new(schemas.ResultRow), 1)
	if err != nil {
		return nil, fmt.Errorf("parquet: new writer: %w", err)
	}
	m, err := newRowMarshaller(pw.SchemaHandler)
	if err != nil {
		return nil, err
	}
	pw.MarshalFunc = m.marshal
	pw.RowGroupSize = rowGroupSize
	pw.CompressionType = pqparquet.CompressionCodec_SNAPPY
	return &Writer{pw: pw}, nil
}

// Write appends one row.
func (w *Writer) Write(row schemas.ResultRow) error {
	if w.closed {
		return errors.New("parquet: write after close")
	}
	if len(w.chunk) == cap(w.chunk) {
		w.chunk = make([]schemas.ResultRow, 0, chunkRows)
	}
	w.chunk = append(w.chunk, row)
	if err := w.pw.Write(rowRef{&w.chunk[len(w.chunk)-1]}); err != nil {
		w.err = fmt.Errorf("parquet: write row %d: %w", row.RowNumber, err)
		return w.err
	}
	w.rows++
	return nil
}

// Rows returns how many rows were written.
func (w *Writer) Rows() int64 { return w.rows }

// Close flushes the last row group and writes the footer. It is idempotent
// and returns the first error the writer met.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if err := w.pw.WriteStop(); err != nil && w.err == nil {
		w.err = fmt.Errorf("parquet: finish file: %w", err)
	}
	return w.err
}

// Encode writes rows as one complete Parquet file into w.
func Encode(w io.Writer, rows []schemas.ResultRow) error {
	pw, err := NewWriter(w)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := pw.Write(r); err != nil {
			pw.Close()
			return err
		}
	}
	return pw.Close()
}

// Decode reads every row of a result file written by Writer.
func Decode(b []byte) ([]schemas.ResultRow, error) {
	pr, err := reader.NewParquetReader(buffer.NewBufferFileFromBytes(b), new(schemas.ResultRow), 1)
	if err != nil {
		return nil, fmt.Errorf("parquet: open: %w", err)
	}
	defer pr.ReadStop()
	rows := make([]schemas.ResultRow, pr.GetNumRows())
	if err := pr.Read(&rows); err != nil {
		return nil, fmt.Errorf("parquet: read: %w", err)
	}
	return rows, nil
}

// EncodeDiff writes diff rows (see schemas.DiffRow) as one complete Parquet
// file into w; no rows give a file with the schema and no row.
func EncodeDiff(w io.Writer, rows []schemas.DiffRow) error {
	pw, err := writer.NewParquetWriterFromWriter(w, new(schemas.DiffRow), 1)
	if err != nil {
		return fmt.Errorf("parquet: new diff writer: %w", err)
	}
	pw.RowGroupSize = rowGroupSize
	pw.CompressionType = pqparquet.CompressionCodec_SNAPPY
	for _, r := range rows {
		if err := pw.Write(r); err != nil {
			pw.WriteStop()
			return fmt.Errorf("parquet: write diff row: %w", err)
		}
	}
	if err := pw.WriteStop(); err != nil {
		return fmt.Errorf("parquet: finish diff file: %w", err)
	}
	return nil
}

// DecodeDiff reads every row of a file written by EncodeDiff.
func DecodeDiff(b []byte) ([]schemas.DiffRow, error) {
	pr, err := reader.NewParquetReader(buffer.NewBufferFileFromBytes(b), new(schemas.DiffRow), 1)
	if err != nil {
		return nil, fmt.Errorf("parquet: open diff: %w", err)
	}
	defer pr.ReadStop()
	rows := make([]schemas.DiffRow, pr.GetNumRows())
	if err := pr.Read(&rows); err != nil {
		return nil, fmt.Errorf("parquet: read diff: %w", err)
	}
	return rows, nil
}
