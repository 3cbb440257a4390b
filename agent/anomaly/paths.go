package anomaly

import "strings"

// GeneralizePath maps a file path to the form the baseline learns, so that
// paths that differ only in a number, an id or a user's name count as the
// same behaviour:
//
//   - the component after /home (a user's home directory) becomes "*":
//     /home/alice/.cache/x and /home/bob/.cache/x are both /home/*/.cache/x;
//   - within a component, split at the separators . - _ : + @ = , [ ] and
//     space, a token of decimal digits becomes "#" (pids, counters, version
//     numbers): /proc/123/status is /proc/#/status, libc.so.6 is libc.so.#;
//   - a token of four or more hexadecimal digits with at least one decimal
//     digit becomes "#" too (hashes, container ids, UUID parts):
//     /var/lib/docker/containers/3f9c0a1b.../config.v2.json is
//     /var/lib/docker/containers/#/config.v#.json.
//
// Words made only of the letters a-f (dead, face) are left alone, and so
// are names that mix other letters with digits (python3, x86, sha256sum).
// Random names made of letters only (mktemp's tmp.AbCdEf) are not
// recognised. The mapping is idempotent: a generalised path maps to itself.
// /root is one user's home and stays as it is.
func GeneralizePath(p string) string {
	if p == "" {
		return p
	}
	parts := strings.Split(p, "/")
	for i, c := range parts {
		if i == 2 && parts[0] == "" && parts[1] == "home" && c != "" {
			parts[i] = "*"
			continue
		}
		parts[i] = generalizeComponent(c)
	}
	return strings.Join(parts, "/")
}

// isPathSeparator reports whether c splits a path component into tokens.
func isPathSeparator(c byte) bool {
	switch c {
	case '.', '-', '_', ':', '+', '@', '=', ',', '[', ']', ' ':
		return true
	}
	return false
}

// generalizeComponent replaces the numeric and hexadecimal tokens of one
// path component with "#".
func generalizeComponent(c string) string {
	var b strings.Builder
	changed := false
	start := 0
	flush := func(end int) {
		tok := c[start:end]
		if isVolatileToken(tok) {
			b.WriteByte('#')
			changed = true
		} else {
			b.WriteString(tok)
		}
	}
	for i := 0; i < len(c); i++ {
		if isPathSeparator(c[i]) {
			flush(i)
			b.WriteByte(c[i])
			start = i + 1
		}
	}
	flush(len(c))
	if !changed {
		return c
	}
	return b.String()
}

// isVolatileToken reports whether a token is a number or a hexadecimal id.
func isVolatileToken(tok string) bool {
	if tok == "" {
		return false
	}
	digits, hexLetters := 0, 0
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			hexLetters++
		default:
			return false
		}
	}
	if hexLetters == 0 {
		return true
	}
	return digits > 0 && len(tok) >= 4
}
