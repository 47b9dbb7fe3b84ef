package s3

import (
	"encoding/xml"
	"fmt"
	"net/http"
)

// Error is an S3 error response (AWS, "Error responses"): an HTTP status
// and an <Error> document with an S3 error code the AWS SDKs understand.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorDoc struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	RequestID string   `xml:"RequestId"`
}

// write sends the error; a HEAD answer has no body, as S3's.
func (e *Error) write(w http.ResponseWriter, r *http.Request, requestID string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("X-Amz-Request-Id", requestID)
	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(errorDoc{Code: e.Code, Message: e.Message, Resource: r.URL.Path, RequestID: requestID})
}
