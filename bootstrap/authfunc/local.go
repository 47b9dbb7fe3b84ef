//go:build !ycf

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
)

// main runs the handler once outside Cloud Functions (whose builder sets
// the ycf build tag and supplies its own entry): it reads one authorizer
// request as JSON on stdin and writes the answer to stdout, with the
// tokens taken from GOSLING_AUTH_TOKEN_1..N as in the cloud.
//
//	echo '{"headers":{"Authorization":"Bearer t"}}' | GOSLING_AUTH_TOKEN_1=t go run ./bootstrap/authfunc
func main() {
	var req Request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "read the request:", err)
		os.Exit(1)
	}
	resp, _ := Handler(context.Background(), &req)
	if err := json.NewEncoder(os.Stdout).Encode(resp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
