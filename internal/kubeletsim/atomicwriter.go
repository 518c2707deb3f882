package kubeletsim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The names the kubelet's atomic writer uses inside a volume directory
// (k8s.io/kubernetes v1.37.2, pkg/volume/util/atomic_writer.go).
const (
	// DataDirName is the symlink that points at the current timestamped directory.
	DataDirName = "..data"
	// NewDataDirName is the temporary symlink renamed over DataDirName to publish a payload.
	NewDataDirName = "..data_tmp"
	// FileMode is the mode of every projected file (the operator's DefaultMode, 0400).
	FileMode fs.FileMode = 0o400

	tsDirLayout    = "..2006_01_02_15_04_05."
	maxFileNameLen = 255
	maxPathLen     = 4096
)

// WriteAtomic publishes files (relative path -> content) into dir exactly as the kubelet
// projects a Secret volume:
//
//  1. if dir/..data already points at a directory holding the same payload, nothing is
//     written (the kubelet skips unchanged payloads too);
//  2. the payload is written into a new directory dir/..YYYY_MM_DD_HH_MM_SS.<random>
//     (files mode 0400);
//  3. a symlink dir/..data_tmp -> that directory is created and renamed over dir/..data,
//     which switches every reader to the complete new payload at once;
//  4. the user-visible symlinks dir/<name> -> ..data/<name> are created when missing (they
//     never change afterwards), and those of names no longer in the payload are removed;
//  5. the previous timestamped directory is removed.
//
// Calls for the same dir must not run concurrently (the kubelet serializes them per volume).
func WriteAtomic(dir string, files map[string][]byte) error {
	_, err := writeAtomic(dir, files)
	return err
}

// writeAtomic is WriteAtomic, also telling whether the payload changed on disk.
func writeAtomic(dir string, files map[string][]byte) (bool, error) {
	payload := make(map[string][]byte, len(files))
	for p, data := range files {
		if err := validatePath(p); err != nil {
			return false, err
		}
		payload[filepath.Clean(p)] = data
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a volume directory: every container user must traverse it
		return false, fmt.Errorf("atomic writer: create %s: %w", dir, err)
	}

	dataDir := filepath.Join(dir, DataDirName)
	oldTsName, err := os.Readlink(dataDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("atomic writer: read %s: %w", dataDir, err)
		}
		oldTsName = ""
	}
	var oldTsDir string
	var toRemove []string
	if oldTsName != "" {
		oldTsDir = filepath.Join(dir, oldTsName)
		toRemove, err = pathsToRemove(payload, oldTsDir)
		if err != nil {
			return false, err
		}
		changed, err := payloadChanged(payload, oldTsDir)
		if err != nil {
			return false, err
		}
		if !changed && len(toRemove) == 0 {
			// Still make sure the user-visible links exist, as the kubelet does.
			return false, createUserVisibleLinks(dir, payload)
		}
	}

	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format(tsDirLayout))
	if err != nil {
		return false, fmt.Errorf("atomic writer: create timestamped directory: %w", err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil { //nolint:gosec // the kubelet's mode for the data directory
		return false, fmt.Errorf("atomic writer: %w", err)
	}
	if err := writePayload(tsDir, payload); err != nil {
		_ = os.RemoveAll(tsDir)
		return false, err
	}

	tmpLink := filepath.Join(dir, NewDataDirName)
	if err := os.Remove(tmpLink); err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = os.RemoveAll(tsDir)
		return false, fmt.Errorf("atomic writer: remove stale %s: %w", tmpLink, err)
	}
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		_ = os.RemoveAll(tsDir)
		return false, fmt.Errorf("atomic writer: %w", err)
	}
	if err := os.Rename(tmpLink, dataDir); err != nil {
		_ = os.Remove(tmpLink)
		_ = os.RemoveAll(tsDir)
		return false, fmt.Errorf("atomic writer: publish: %w", err)
	}

	if err := createUserVisibleLinks(dir, payload); err != nil {
		return true, err
	}
	var firstErr error
	for _, p := range toRemove {
		if err := os.Remove(filepath.Join(dir, p)); err != nil && !errors.Is(err, fs.ErrNotExist) && firstErr == nil {
			firstErr = fmt.Errorf("atomic writer: prune %s: %w", p, err)
		}
	}
	if firstErr != nil {
		return true, firstErr
	}
	if oldTsDir != "" {
		if err := os.RemoveAll(oldTsDir); err != nil {
			return true, fmt.Errorf("atomic writer: remove old data directory: %w", err)
		}
	}
	return true, nil
}

func validatePath(p string) error {
	if p == "" {
		return errors.New("atomic writer: invalid path: must not be empty")
	}
	if filepath.IsAbs(p) {
		return fmt.Errorf("atomic writer: invalid path %q: must be relative", p)
	}
	if len(p) > maxPathLen {
		return fmt.Errorf("atomic writer: invalid path: longer than %d characters", maxPathLen)
	}
	items := strings.Split(p, string(os.PathSeparator))
	for _, item := range items {
		if item == ".." {
			return fmt.Errorf("atomic writer: invalid path %q: must not contain '..'", p)
		}
		if len(item) > maxFileNameLen {
			return fmt.Errorf("atomic writer: invalid path: file names must be at most %d characters", maxFileNameLen)
		}
	}
	if strings.HasPrefix(items[0], "..") {
		return fmt.Errorf("atomic writer: invalid path %q: must not start with '..'", p)
	}
	return nil
}

// payloadChanged tells whether any payload file is missing from oldTsDir or differs.
func payloadChanged(payload map[string][]byte, oldTsDir string) (bool, error) {
	for p, data := range payload {
		onDisk, err := os.ReadFile(filepath.Join(oldTsDir, p))
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("atomic writer: compare %s: %w", p, err)
		}
		if !bytes.Equal(onDisk, data) {
			return true, nil
		}
	}
	return false, nil
}

// pathsToRemove returns the top-level user-visible names of the old payload that the new
// payload no longer has.
func pathsToRemove(payload map[string][]byte, oldTsDir string) ([]string, error) {
	keep := make(map[string]bool, len(payload))
	for p := range payload {
		keep[topLevel(p)] = true
	}
	entries, err := os.ReadDir(oldTsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("atomic writer: list old data directory: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !keep[e.Name()] {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func writePayload(tsDir string, payload map[string][]byte) error {
	for p, data := range payload {
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil { //nolint:gosec // as the kubelet does
			return fmt.Errorf("atomic writer: %w", err)
		}
		if err := os.WriteFile(full, data, FileMode); err != nil {
			return fmt.Errorf("atomic writer: write %s: %w", p, err)
		}
		if err := os.Chmod(full, FileMode); err != nil {
			return fmt.Errorf("atomic writer: %w", err)
		}
	}
	return nil
}

func createUserVisibleLinks(dir string, payload map[string][]byte) error {
	for p := range payload {
		name := topLevel(p)
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("atomic writer: %w", err)
		}
		if err := os.Symlink(filepath.Join(DataDirName, name), link); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("atomic writer: link %s: %w", name, err)
		}
	}
	return nil
}

func topLevel(p string) string {
	if i := strings.IndexByte(p, os.PathSeparator); i >= 0 {
		return p[:i]
	}
	return p
}
