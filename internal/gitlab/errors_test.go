package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestErrorMessage(t *testing.T) {
	cases := map[string]string{
		`{"message":"404 Project Not Found"}`:                                      "404 Project Not Found",
		`{"error":"runner_type does not have a valid value"}`:                      "runner_type does not have a valid value",
		`{"message":{"url":["is blocked"],"base":["too many hooks","try later"]}}`: "base too many hooks, try later; url is blocked",
		`{"error":"invalid_token","error_description":"Token was revoked."}`:       "invalid_token: Token was revoked.",
		`{"message":["one","two"]}`:                                                "one, two",
		"Retry later\n":                                                            "Retry later",
		"<html><body><h1>502 Bad Gateway</h1></body></html>":                       "",
		"": "",
		`{"message":"400 Bad request - Tags list can not be empty when runner is..."}`: "400 Bad request - Tags list can not be empty when runner is...",
	}
	for body, want := range cases {
		if got := errorMessage([]byte(body)); got != want {
			t.Errorf("errorMessage(%q) = %q, want %q", body, got, want)
		}
	}
}

func TestAPIErrorHelpers(t *testing.T) {
	err := fmt.Errorf("delete runner 3: %w", &APIError{StatusCode: 404, Method: "DELETE", Path: "/runners/3", Message: "404 Not found"})
	if !IsNotFound(err) || IsForbidden(err) || IsRateLimited(err) {
		t.Errorf("helpers disagree on %v", err)
	}
	if got := err.Error(); got != "delete runner 3: gitlab: DELETE /runners/3: 404 404 Not found" {
		t.Errorf("Error() = %q", got)
	}
	if IsNotFound(errors.New("404")) || IsNotFound(nil) {
		t.Errorf("IsNotFound matched a non-API error")
	}
}

func TestUnauthorized(t *testing.T) {
	s := newServer(t)
	c, err := New(s.URL(), "glpat-wrong-token", WithRetry(testRetryMax, testWaitMin, testWaitMax))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListRunners(context.Background(), ListRunnersFilter{})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Message != "401 Unauthorized" || apiErr.Method != "GET" || apiErr.Path != "/runners" {
		t.Fatalf("err = %#v, want a 401 APIError", err)
	}
	if strings.Contains(err.Error(), "glpat-wrong-token") {
		t.Errorf("error %q contains the token", err)
	}
	if n := s.CountRequests(http.MethodGet, "/runners"); n != 1 {
		t.Errorf("a 401 was retried: %d requests", n)
	}
}
