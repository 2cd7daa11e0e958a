package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/apbatch/apbatch/pipeline/keys"
	"github.com/apbatch/apbatch/pipeline/kms"
)

// keysHelp tells where the key-encryption keys of job identities come from.
const keysHelp = `Job identities (names, birth dates, INE, ...) cross Kafka sealed with
AES-256-GCM under data keys wrapped by a key-encryption key (KEK), given to
every ingest and work process, by the environment only:
  APBATCH_KEK_FILE            file of a 32-byte key, hex or base64 (openssl rand -hex 32)
  APBATCH_KEK                 the same key as a value
  APBATCH_KMS_KEY_ID          or an AWS KMS key (id, ARN or alias/NAME; region and
                              credentials as for any AWS SDK, APBATCH_KMS_ENDPOINT
                              and APBATCH_KMS_REGION to override)
Rotation: give the new key as above and the old one, until the jobs sealed
under it are consumed, in APBATCH_KEK_PREVIOUS_FILE, APBATCH_KEK_PREVIOUS or
APBATCH_KMS_KEY_ID_PREVIOUS (comma-separated lists).
`

// kekFileName is the local key apbatch run creates in its --data-dir.
const kekFileName = "kek.key"

// keyRing builds the keyring of job identities from the APBATCH_KEK*
// variables (see keysHelp). With none of them, a local key file in
// createIn is used, made on first use (apbatch run), or, when createIn is
// "", it is an error saying what to set.
func keyRing(ctx context.Context, getenv func(string) string, createIn string) (*keys.Ring, error) {
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	list := func(name string) []string {
		var out []string
		for _, v := range strings.Split(get(name), ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	local := func(name string, k []byte, err error) (keys.Wrapper, error) {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return keys.NewLocal(k)
	}
	kmsKey := func(id string) (keys.Wrapper, error) {
		return kms.New(ctx, kms.Config{KeyID: id, Endpoint: get("APBATCH_KMS_ENDPOINT"), Region: get("APBATCH_KMS_REGION")})
	}

	var current keys.Wrapper
	var given []string
	for _, name := range []string{"APBATCH_KEK_FILE", "APBATCH_KEK", "APBATCH_KMS_KEY_ID"} {
		if get(name) != "" {
			given = append(given, name)
		}
	}
	var err error
	switch {
	case len(given) > 1:
		return nil, fmt.Errorf("job identity keys: give one of %s, not several", strings.Join(given, ", "))
	case get("APBATCH_KEK_FILE") != "":
		k, rerr := keys.ReadKeyFile(get("APBATCH_KEK_FILE"))
		current, err = local("APBATCH_KEK_FILE", k, rerr)
	case get("APBATCH_KEK") != "":
		k, perr := keys.ParseKey(get("APBATCH_KEK"))
		current, err = local("APBATCH_KEK", k, perr)
	case get("APBATCH_KMS_KEY_ID") != "":
		current, err = kmsKey(get("APBATCH_KMS_KEY_ID"))
	case createIn != "":
		path := filepath.Join(createIn, kekFileName)
		k, lerr := keys.LoadOrCreateKeyFile(path)
		current, err = local(path, k, lerr)
	default:
		return nil, errors.New("no key to seal job identities in Kafka: set APBATCH_KEK_FILE (a file holding the output of " +
			"openssl rand -hex 32), APBATCH_KEK, or APBATCH_KMS_KEY_ID (an AWS KMS key), the same in every ingest and work process")
	}
	if err != nil {
		return nil, err
	}

	var previous []keys.Wrapper
	for _, path := range list("APBATCH_KEK_PREVIOUS_FILE") {
		k, rerr := keys.ReadKeyFile(path)
		w, err := local("APBATCH_KEK_PREVIOUS_FILE", k, rerr)
		if err != nil {
			return nil, err
		}
		previous = append(previous, w)
	}
	for i, v := range list("APBATCH_KEK_PREVIOUS") {
		k, perr := keys.ParseKey(v)
		w, err := local(fmt.Sprintf("APBATCH_KEK_PREVIOUS (key %d)", i+1), k, perr)
		if err != nil {
			return nil, err
		}
		previous = append(previous, w)
	}
	for _, id := range list("APBATCH_KMS_KEY_ID_PREVIOUS") {
		w, err := kmsKey(id)
		if err != nil {
			return nil, err
		}
		previous = append(previous, w)
	}
	ring, err := keys.New(current, previous...)
	if err != nil {
		return nil, fmt.Errorf("job identity keys: %w", err)
	}
	return ring, nil
}
