package fly

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes. In fly it is written with a unit: "512MiB", "4GiB", "20GB".
type Size int64

// Size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first so "GiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize reads a size with a unit, such as "4GiB" or "1.5GB".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, fmt.Errorf("%q is not a size: the number part %q is not a non-negative number", s, num)
		}
		b := f * u.mult
		if b > math.MaxInt64/2 {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return Size(math.Round(b)), nil
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, fmt.Errorf("%q has no unit: write it as %sMiB or %sGiB", s, t, t)
	}
	return 0, fmt.Errorf("%q is not a size: use a number and one of the units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB", s)
}

// String writes the size in the largest binary unit that divides it.
func (s Size) String() string {
	switch {
	case s == 0:
		return "0B"
	case s%TiB == 0:
		return strconv.FormatInt(int64(s/TiB), 10) + "TiB"
	case s%GiB == 0:
		return strconv.FormatInt(int64(s/GiB), 10) + "GiB"
	case s%MiB == 0:
		return strconv.FormatInt(int64(s/MiB), 10) + "MiB"
	case s%KiB == 0:
		return strconv.FormatInt(int64(s/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MiB is the size in whole mebibytes, rounded up.
func (s Size) MiB() int64 { return (int64(s) + int64(MiB) - 1) / int64(MiB) }

// MarshalJSON writes the size as its string form.
func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a size string or a number of bytes.
func (s *Size) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		*s = Size(n)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	v, err := ParseSize(str)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Duration is a time span. In fly it is written as "90s", "15m", "1h30m", "7d" or "2w".
type Duration time.Duration

// D converts to a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

var durationUnits = map[string]time.Duration{
	"ms": time.Millisecond,
	"s":  time.Second,
	"m":  time.Minute,
	"h":  time.Hour,
	"d":  24 * time.Hour,
	"w":  7 * 24 * time.Hour,
}

// ParseDuration reads a duration such as "15m", "1h30m" or "7d".
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if t == "0" {
		return 0, nil
	}
	var total time.Duration
	for t != "" {
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q is not a duration: expected a number at %q", s, t)
		}
		num := t[:i]
		t = t[i:]
		j := 0
		for j < len(t) && t[j] >= 'a' && t[j] <= 'z' {
			j++
		}
		unit := t[:j]
		t = t[j:]
		if unit == "" {
			return 0, fmt.Errorf("%q has no unit: write it as %ss, %sm or %sh", s, num, num, num)
		}
		mult, ok := durationUnits[unit]
		if !ok {
			return 0, fmt.Errorf("%q has an unknown unit %q: use ms, s, m, h, d or w", s, unit)
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration: %q is not a number", s, num)
		}
		part := f * float64(mult)
		if part > float64(math.MaxInt64/4) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		total += time.Duration(part)
		if total > time.Duration(math.MaxInt64/4) {
			return 0, fmt.Errorf("%q is too long", s)
		}
	}
	return Duration(total), nil
}

// String writes the duration compactly: "15m", "1h30m", "7d".
func (d Duration) String() string {
	v := time.Duration(d)
	if v == 0 {
		return "0s"
	}
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
		v = -v
	}
	for _, u := range []struct {
		name string
		dur  time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if v >= u.dur {
			b.WriteString(strconv.FormatInt(int64(v/u.dur), 10))
			b.WriteString(u.name)
			v %= u.dur
		}
	}
	if v > 0 {
		b.WriteString(strconv.FormatInt(int64(v), 10) + "ns")
	}
	return b.String()
}

// MarshalJSON writes the duration as its string form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		*d = Duration(n)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	if strings.HasSuffix(str, "ns") {
		v, err := time.ParseDuration(str)
		*d = Duration(v)
		return err
	}
	v, err := ParseDuration(str)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// SecretRef is a secret URI: yc-lockbox://{secret-id}/{key},
// aws-sm://{secret-name}/{key}, vault://{path}/{key} or, for the embedded
// development default only, local://{name}/{key}. An optional ?version=
// pins a version.
type SecretRef string

// Secret URI schemes.
const (
	SchemeLockbox = "yc-lockbox"
	SchemeAWSSM   = "aws-sm"
	SchemeVault   = "vault"
	SchemeLocal   = "local"
)

// SecretSchemes lists every scheme a secret URI may use.
var SecretSchemes = []string{SchemeLockbox, SchemeAWSSM, SchemeVault, SchemeLocal}

// SecretURI is a parsed SecretRef.
type SecretURI struct {
	Scheme string `json:"scheme"`
	// Path is the secret: the Lockbox secret ID, the Secrets Manager name or
	// the Vault path (mount included).
	Path string `json:"path"`
	// Key is the entry inside the secret.
	Key string `json:"key"`
	// Version pins a version; empty means the current one.
	Version string `json:"version,omitempty"`
}

// String writes the URI back.
func (u SecretURI) String() string {
	s := u.Scheme + "://" + u.Path + "/" + u.Key
	if u.Version != "" {
		s += "?version=" + url.QueryEscape(u.Version)
	}
	return s
}

// Parse parses the reference.
func (r SecretRef) Parse() (SecretURI, error) { return ParseSecretURI(string(r)) }

// IsZero tells whether the reference is empty.
func (r SecretRef) IsZero() bool { return r == "" }

// Scheme is the reference's scheme, or "" when it does not parse.
func (r SecretRef) Scheme() string {
	u, err := r.Parse()
	if err != nil {
		return ""
	}
	return u.Scheme
}

// ParseSecretURI parses a secret URI. Its errors never repeat the input, which
// may be a plaintext secret written where a URI belongs.
func ParseSecretURI(s string) (SecretURI, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return SecretURI{}, errNotSecretURI
	}
	known := false
	for _, k := range SecretSchemes {
		if scheme == k {
			known = true
		}
	}
	if !known {
		return SecretURI{}, fmt.Errorf("unknown secret scheme %q: use one of %s", scheme, strings.Join(SecretSchemes, ", "))
	}
	var version string
	if p, q, ok := strings.Cut(rest, "?"); ok {
		rest = p
		vals, err := url.ParseQuery(q)
		if err != nil {
			return SecretURI{}, fmt.Errorf("the query of a %s URI does not parse", scheme)
		}
		for k := range vals {
			if k != "version" {
				return SecretURI{}, fmt.Errorf("unknown URI parameter %q: only ?version= is supported", k)
			}
		}
		version = vals.Get("version")
		if version == "" {
			return SecretURI{}, fmt.Errorf("?version= needs a value")
		}
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return SecretURI{}, fmt.Errorf("a %s URI needs a secret and a key: %s://{secret}/{key}", scheme, scheme)
	}
	u := SecretURI{Scheme: scheme, Path: rest[:i], Key: rest[i+1:], Version: version}
	if strings.Contains(u.Path, "//") || strings.HasPrefix(u.Path, "/") {
		return SecretURI{}, fmt.Errorf("the secret part of a %s URI has an empty path segment", scheme)
	}
	switch scheme {
	case SchemeLockbox:
		if strings.Contains(u.Path, "/") || !isLowerAlnum(u.Path) {
			return SecretURI{}, fmt.Errorf("a yc-lockbox URI names the secret by its ID (letters and digits, no slashes): yc-lockbox://e6q0abcdefghijklmnop/key")
		}
	case SchemeAWSSM:
		for _, c := range u.Path {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/_+=.@-", c)) {
				return SecretURI{}, fmt.Errorf("an aws-sm secret name may only hold letters, digits and /_+=.@-")
			}
		}
	}
	return u, nil
}

var errNotSecretURI = fmt.Errorf("not a secret URI")

func isLowerAlnum(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// tokenPrefixes are prefixes of well-known credentials. A value starting with
// one of them is a plaintext secret, wherever it appears.
var tokenPrefixes = []string{"glpat-", "glrt-", "gldt-", "glptt-", "glft-", "glsoat-", "gloas-", "GR1348941", "AKIA", "ASIA", "hvs.", "hvb.", "y0_", "t1."}

func looksLikeToken(s string) bool {
	for _, p := range tokenPrefixes {
		if strings.HasPrefix(s, p) && len(s) >= len(p)+8 {
			return true
		}
	}
	return false
}

// ValidHost checks a GitLab host: a fully qualified domain name (or
// "localhost", or an IP address) with an optional port.
func ValidHost(h string) error {
	host := h
	if strings.Contains(h, "://") {
		return fmt.Errorf("%q is a URL: give only the host name, such as gitlab.example.com", h)
	}
	if hp, port, err := net.SplitHostPort(h); err == nil {
		p, perr := strconv.Atoi(port)
		if perr != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%q has an invalid port", h)
		}
		host = hp
	}
	if net.ParseIP(host) != nil || host == "localhost" {
		return nil
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", h)
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified domain name: it needs a domain, such as gitlab.example.com", h)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%q is not a valid domain name: labels are 1 to 63 characters", h)
		}
		for i, c := range l {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
			if !ok || (c == '-' && (i == 0 || i == len(l)-1)) {
				return fmt.Errorf("%q is not a valid domain name: %q has a character a host name cannot hold", h, l)
			}
		}
	}
	if tld := labels[len(labels)-1]; tld[0] >= '0' && tld[0] <= '9' {
		return fmt.Errorf("%q is not a valid domain name: its top-level domain starts with a digit", h)
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
