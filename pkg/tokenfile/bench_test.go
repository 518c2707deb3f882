package tokenfile

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkToken measures the common case: the volume did not change since the last call
// (one readlink of ..data).
func BenchmarkToken(b *testing.B) {
	_, file := newVolume(b, 1)
	s, err := New(file)
	if err != nil {
		b.Fatal(err)
	}
	mustToken(b, s)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Token(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenParallel is BenchmarkToken with every CPU reading.
func BenchmarkTokenParallel(b *testing.B) {
	_, file := newVolume(b, 1)
	s, err := New(file)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Token(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkTokenPlainFile measures the cached read of a plain file (one stat).
func BenchmarkTokenPlainFile(b *testing.B) {
	file := filepath.Join(b.TempDir(), "token")
	if err := os.WriteFile(file, []byte("abc"), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := New(file)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Token(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenAfterUpdate measures a read right after each update (the slow path).
func BenchmarkTokenAfterUpdate(b *testing.B) {
	dir, file := newVolume(b, 0)
	s, err := New(file)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		publish(b, dir, version(n))
		b.StartTimer()
		if _, err := s.Token(); err != nil {
			b.Fatal(err)
		}
	}
}
