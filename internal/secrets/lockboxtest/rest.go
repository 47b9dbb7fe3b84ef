package lockboxtest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// RESTServer serves Lockbox's REST API over the same secrets, as Yandex
// serves it (gRPC transcoding: the services' messages as protojson, errors
// as {"code","message"} with the HTTP status of their gRPC code):
//
//	GET /lockbox/v1/secrets/{secretId}/payload[?versionId=]  (payload.lockbox.api.cloud.yandex.net)
//	GET /lockbox/v1/secrets/{secretId}                      (lockbox.api.cloud.yandex.net)
//	GET /lockbox/v1/secrets/{secretId}/versions[?pageSize=&pageToken=]
//
// One listener serves both hosts' paths. Requests carry the IAM token as
// "Authorization: Bearer <token>". Close it when done.
func (s *Server) RESTServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(s.serveREST))
}

func (s *Server) serveREST(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/lockbox/v1/secrets/")
	if r.Method != http.MethodGet || !ok || rest == "" {
		writeRESTError(w, status.Error(codes.Unimplemented, "Method not found"))
		return
	}
	ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", r.Header.Get("Authorization")))
	id, sub, _ := strings.Cut(rest, "/")
	var out proto.Message
	var err error
	switch sub {
	case "payload":
		out, err = payloadService{l: s.lb}.Get(ctx, &lockbox.GetPayloadRequest{SecretId: id, VersionId: r.URL.Query().Get("versionId")})
	case "":
		out, err = secretService{l: s.lb}.Get(ctx, &lockbox.GetSecretRequest{SecretId: id})
	case "versions":
		size, _ := strconv.ParseInt(r.URL.Query().Get("pageSize"), 10, 64)
		out, err = secretService{l: s.lb}.ListVersions(ctx, &lockbox.ListVersionsRequest{SecretId: id, PageSize: size, PageToken: r.URL.Query().Get("pageToken")})
	default:
		err = status.Error(codes.Unimplemented, "Method not found")
	}
	if err != nil {
		writeRESTError(w, err)
		return
	}
	b, _ := protojson.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// restStatus is the HTTP status gRPC transcoding gives a code.
var restStatus = map[codes.Code]int{
	codes.NotFound: http.StatusNotFound, codes.PermissionDenied: http.StatusForbidden, codes.Unauthenticated: http.StatusUnauthorized,
	codes.ResourceExhausted: http.StatusTooManyRequests, codes.InvalidArgument: http.StatusBadRequest, codes.Unimplemented: http.StatusNotImplemented,
	codes.FailedPrecondition: http.StatusBadRequest,
}

func writeRESTError(w http.ResponseWriter, err error) {
	st, _ := status.FromError(err)
	code, ok := restStatus[st.Code()]
	if !ok {
		code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := protojson.Marshal(st.Proto())
	_, _ = w.Write(b)
}
