package harness

import (
	"flag"
	"slices"
	"strings"
)

// Verdict words of the report tables.
const (
	Met    = "met"
	Missed = "**missed**"
	// NotMeasured is the verdict of a target the run gave nothing to judge by (no
	// rotation in the window, say): it counts as missed, never as met.
	NotMeasured = "**not measured**"
)

// MakeCommand is the make invocation that reproduces this run, for the report: the make
// target with the flags set on the command line (except those named in skip) passed
// through its flags variable.
func MakeCommand(target, flagsVar string, skip ...string) string {
	var flags []string
	flag.Visit(func(f *flag.Flag) {
		if !slices.Contains(skip, f.Name) {
			flags = append(flags, "--"+f.Name+"="+f.Value.String())
		}
	})
	if len(flags) == 0 {
		return "make " + target
	}
	return "make " + target + " " + flagsVar + "='" + strings.Join(flags, " ") + "'"
}
