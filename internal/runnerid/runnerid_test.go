package runnerid

import (
	"regexp"
	"strings"
	"testing"
)

// Names fit each cloud's limits, stay distinct when shortened, and are
// stable.
func TestNamesFitTheClouds(t *testing.T) {
	yandexName := regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	long := strings.Repeat("d", 40)
	egg := strings.Repeat("e", 63)
	for _, dep := range []string{"gosling-prod", long} {
		for _, e := range []string{"web", egg, egg[:62] + "f"} {
			if n := AWSRole(dep, e); len(n) > 64 {
				t.Errorf("role %q is %d long", n, len(n))
			}
			if n := AWSExecutionRole(dep, e); len(n) > 64 {
				t.Errorf("execution role %q is %d long", n, len(n))
			}
			for _, n := range []string{YandexServiceAccount(dep, e), LockboxTokenSecret(dep, e)} {
				if !yandexName.MatchString(n) {
					t.Errorf("%q is no Yandex Cloud name", n)
				}
			}
		}
	}
	first, again := AWSRole(long, egg), AWSRole(long, strings.Repeat("e", 63))
	if first == AWSRole(long, egg[:62]+"f") || first != again {
		t.Error("shortened names collide or change")
	}
	if AWSRole("gosling-prod", "web") != "gosling-prod-runner-web" || LockboxTokenSecret("gosling-prod", "web") != "gosling-prod-runners-web" {
		t.Error("short names are shortened")
	}
	if p := AWSTokenPrefix("gosling-prod", "web"); !strings.HasPrefix(p, AWSTokensPrefix("gosling-prod")) || !strings.HasSuffix(p, "/web/") {
		t.Errorf("token prefix %q", p)
	}
}
