// Package schemas holds apbatch's contracts: the input columns and their
// aliases, the identity parameters of a lookup and their validation rules, the
// Kafka messages (each with a version field), the result statuses and error
// codes, and the Parquet result schema. It does no I/O.
package schemas
