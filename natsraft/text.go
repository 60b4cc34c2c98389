package natsraft

import (
	"fmt"
	"strings"
	"time"
)

// Words and numbers for an operator: bounded lists, rounded seconds,
// shares and byte counts as the diagnosis and readiness write them.

func dedupe(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// bounded returns the first max items, and a last "and N more" for the
// rest; items itself is left as it is.
func bounded(items []string, max int) []string {
	if len(items) > max {
		return append(items[:max:max], fmt.Sprintf("and %d more", len(items)-max))
	}
	return items
}

// JoinBounded joins the first max items with sep, and then "and N more"
// for the rest: a list bounded for a message that is stored or logged.
func JoinBounded(items []string, max int, sep string) string {
	return strings.Join(bounded(items, max), sep)
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
}

func pct(a, b float64) float64 { return 100 * a / b }

// bytesText writes a byte count in binary units.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
