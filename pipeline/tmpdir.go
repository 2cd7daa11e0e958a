package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// TmpDir returns the folder of dataDir that receives the temporary files
// of workbooks (the parts of a large sheet, unpacked in clear while it is
// read or written), so that they stay with the data they copy: under the
// same permissions, and removed by ClearTmp when a killed process left
// them behind.
func TmpDir(dataDir string) string { return filepath.Join(dataDir, "tmp") }

// MakeTmpDir creates dataDir's TmpDir (mode 0700) when missing and
// returns it.
func MakeTmpDir(dataDir string) (string, error) {
	dir := TmpDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("tmp: create %s: %w", dir, err)
	}
	return dir, nil
}

// ClearTmp removes the files of dir (a TmpDir) last modified before
// before: the leftovers of a process that stopped while reading or writing
// a workbook (excelize removes its files itself otherwise). Give the
// current time when no other process uses the data folder (on start), and
// an earlier one when some may (purge: a workbook is read in minutes).
// With dry set it only counts them. It returns the files removed (or to
// remove) and their bytes; a missing folder holds nothing.
func ClearTmp(dir string, before time.Time, dry bool) (files int, size int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p != dir {
			return nil // removed meanwhile by its owner
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !info.ModTime().Before(before) {
			return nil
		}
		if !dry {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		files++
		size += info.Size()
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return files, size, fmt.Errorf("tmp: clear %s: %w", dir, err)
	}
	return files, size, nil
}
