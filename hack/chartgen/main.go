// Command chartgen writes charts/jobtoken/templates/generated from config/ (make chart).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobtoken/jobtoken/internal/chartgen"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

func main() {
	root, err := testenv.RepoRoot()
	if err != nil {
		fail(err)
	}
	files, err := chartgen.Generate(root)
	if err != nil {
		fail(err)
	}
	chart := filepath.Join(root, "charts", "jobtoken")
	if err := os.RemoveAll(filepath.Join(chart, chartgen.Dir)); err != nil {
		fail(err)
	}
	for name, data := range files {
		path := filepath.Join(chart, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fail(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chartgen:", err)
	os.Exit(1)
}
