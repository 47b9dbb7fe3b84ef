//go:build !linux

package testbin

// uncache leaves the file as it is: only Linux is known to map a freshly
// written binary's pages differently (see uncache_linux.go).
func uncache(string) error { return nil }
