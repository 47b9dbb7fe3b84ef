package testbin

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// uncache writes a file just built to disk and drops it from the page
// cache, so that processes started from it map its pages as they map an
// installed binary's, read back from disk.
//
// A binary the toolchain has just written sits in the page cache in the
// large folios it was written in, and a process's page faults then map
// whole folios around each page it touches: a gosling worker started from
// it had about 35 MiB more resident file pages (its idle RSS 107 MiB
// against 72 MiB for the same binary read back from disk). Benchmarks that
// report a process's resident memory would count that as the process's.
func uncache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s to disk: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	return nil
}
