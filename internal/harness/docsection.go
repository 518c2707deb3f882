package harness

import (
	"fmt"
	"os"
	"strings"
)

// docSkeleton is docs/benchmarks.md before any run wrote into it. Each command replaces
// only its own section between the markers; text outside them is kept.
const docSkeleton = `# Benchmarks and chaos

Measured by ` + "`make bench`" + ` and ` + "`make chaos`" + ` against the same real kube-apiserver and etcd the
tests use (bin/k8s, envtest), the development issuer on 127.0.0.1 and the manager in a child
process. These machines are shared and noisy, so every target is a ratio to a floor measured
in the same run, or a count. Each section below is rewritten by the command named in it;
text outside the sections is kept.

<!-- section:bench-1000:begin -->
(not run yet: ` + "`make bench`" + `)
<!-- section:bench-1000:end -->

<!-- section:bench-5000:begin -->
(not run yet: ` + "`make bench BENCH_FLAGS=--jobs=5000`" + `)
<!-- section:bench-5000:end -->

<!-- section:chaos:begin -->
(not run yet: ` + "`make chaos`" + `)
<!-- section:chaos:end -->
`

// UpdateDocSection replaces the section id of the Markdown file at path with content,
// creating the file from the skeleton, or appending the section, when needed.
func UpdateDocSection(path, id, content string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		b, err = []byte(docSkeleton), nil
	}
	if err != nil {
		return err
	}
	doc := string(b)
	begin := fmt.Sprintf("<!-- section:%s:begin -->", id)
	end := fmt.Sprintf("<!-- section:%s:end -->", id)
	section := begin + "\n" + strings.TrimRight(content, "\n") + "\n" + end
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i >= 0 && j > i {
		doc = doc[:i] + section + doc[j+len(end):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(doc), 0o644) //nolint:gosec // a document of the repository
}
