package chartgen

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/jobtoken/jobtoken/internal/testenv"
)

// valuePaths returns the dotted paths of values.yaml: every node, and apart the leaves
// (a scalar, a list or an empty map: what a user sets as a whole).
func valuePaths(values []byte) (nodes, leaves []string, err error) {
	var m map[string]any
	if err := yaml.Unmarshal(values, &m); err != nil {
		return nil, nil, err
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := prefix + k
			nodes = append(nodes, p)
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(p+".", sub)
				continue
			}
			leaves = append(leaves, p)
		}
	}
	walk("", m)
	slices.Sort(nodes)
	slices.Sort(leaves)
	return nodes, leaves, nil
}

var valuesRef = regexp.MustCompile(`\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)`)

// covers reports whether a reference to (or the documentation of) path ref speaks for the
// value at path: the same path, or a map above it that is read or documented as a whole
// (toYaml .Values.resources).
func covers(ref, path string) bool {
	return ref == path || strings.HasPrefix(path, ref+".")
}

// valuesProblems checks that every value is read by a template and named in the
// documentation, and that templates and documentation name only values that exist.
func valuesProblems(values []byte, templates map[string]string, documented []string) ([]string, error) {
	nodes, leaves, err := valuePaths(values)
	if err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	refs := map[string][]string{} // path -> templates that read it
	for name, text := range templates {
		for _, m := range valuesRef.FindAllStringSubmatch(text, -1) {
			p := strings.TrimPrefix(m[1], ".")
			if !slices.Contains(refs[p], name) {
				refs[p] = append(refs[p], name)
			}
		}
	}
	var problems []string
	for _, leaf := range leaves {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(refs)), func(r string) bool { return covers(r, leaf) }) {
			problems = append(problems, fmt.Sprintf("value %s is in values.yaml, but no template reads it", leaf))
		}
		if !slices.ContainsFunc(documented, func(d string) bool { return covers(d, leaf) }) {
			problems = append(problems, fmt.Sprintf("value %s is not in the values table of docs/install.md", leaf))
		}
	}
	for r, in := range refs {
		if !slices.Contains(nodes, r) {
			slices.Sort(in)
			problems = append(problems, fmt.Sprintf("%s read .Values.%s, which values.yaml does not have", strings.Join(in, ", "), r))
		}
	}
	for _, d := range documented {
		if !slices.Contains(nodes, d) {
			problems = append(problems, fmt.Sprintf("docs/install.md documents the value %s, which values.yaml does not have", d))
		}
	}
	slices.Sort(problems)
	return problems, nil
}

var docName = regexp.MustCompile("`([A-Za-z_][A-Za-z0-9_.]*)`")

// documentedValues returns the value names in the first column of the values table in
// the "Helm chart" section of docs/install.md.
func documentedValues(doc string) []string {
	_, section, _ := strings.Cut(doc, "\n## Helm chart\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var names []string
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		for _, m := range docName.FindAllStringSubmatch(first, -1) {
			names = append(names, m[1])
		}
	}
	return names
}

// TestChartValuesUsedAndDocumented checks charts/jobtoken: every value in values.yaml is
// read by a template and named in docs/install.md's values table, and no template or
// table row names a value values.yaml lacks (a mistyped .Values path renders as empty).
func TestChartValuesUsedAndDocumented(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(root, "charts", "jobtoken")
	values, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]string{}
	err = filepath.WalkDir(filepath.Join(chart, "templates"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		rel, _ := filepath.Rel(chart, path)
		templates[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedValues(string(doc))
	_, leaves, _ := valuePaths(values)
	if len(templates) < 5 || len(documented) < 10 || len(leaves) < 20 {
		t.Fatalf("found %d templates, %d documented values and %d values: is the layout of the chart or of docs/install.md different?", len(templates), len(documented), len(leaves))
	}
	problems, err := valuesProblems(values, templates, documented)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestValuesProblemsFindsGaps feeds the check a chart with each kind of gap.
func TestValuesProblemsFindsGaps(t *testing.T) {
	values := []byte("image:\n  tag: x\n  unused: y\nresources:\n  limits: {cpu: 1}\nextraArgs: []\n")
	templates := map[string]string{
		"templates/a.yaml": "image: {{ .Values.image.tag }}\n{{- toYaml .Values.resources }}\n{{ range .Values.extraArgs }}{{ end }}{{ .Values.image.typo }}",
	}
	documented := documentedValues("# x\n\n## Helm chart\n\n| Value | |\n| --- | --- |\n| `image.tag`, `image.unused` | |\n| `resources` | |\n| `gone` | |\n\n## Releases\n\n| `extraArgs` | |\n")
	if want := []string{"image.tag", "image.unused", "resources", "gone"}; !slices.Equal(documented, want) {
		t.Fatalf("documentedValues = %v, want %v (only the Helm chart section's table)", documented, want)
	}
	got, err := valuesProblems(values, templates, documented)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"docs/install.md documents the value gone, which values.yaml does not have",
		"templates/a.yaml read .Values.image.typo, which values.yaml does not have",
		"value extraArgs is not in the values table of docs/install.md",
		"value image.unused is in values.yaml, but no template reads it",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
