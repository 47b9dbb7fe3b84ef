package yctest

import (
	"context"
	"sort"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	apigw "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/apigateway/v1"
	triggers "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/triggers/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ---- Timer triggers ----

type triggerService struct {
	triggers.UnimplementedTriggerServiceServer
	s *Server
}

func (x triggerService) check(rule *triggers.Trigger_Rule) error {
	t := rule.GetTimer()
	if t == nil {
		return status.Error(codes.InvalidArgument, "only timer triggers are served by this stand-in")
	}
	if t.GetCronExpression() == "" {
		return status.Error(codes.InvalidArgument, "rule.timer.cron_expression is required")
	}
	if c := t.GetInvokeContainerWithRetry(); c != nil {
		if x.s.cts[c.GetContainerId()] == nil {
			return status.Errorf(codes.InvalidArgument, "Container %s not found", c.GetContainerId())
		}
		if x.s.sas[c.GetServiceAccountId()] == nil {
			return status.Errorf(codes.InvalidArgument, "Service account %s not found", c.GetServiceAccountId())
		}
	}
	return nil
}

func (x triggerService) Create(_ context.Context, r *triggers.CreateTriggerRequest) (*operation.Operation, error) {
	s := x.s
	for _, t := range s.triggers {
		if t.FolderId == r.GetFolderId() && t.Name == r.GetName() {
			return nil, status.Errorf(codes.AlreadyExists, "Trigger with name %s already exists", r.GetName())
		}
	}
	if err := x.check(r.GetRule()); err != nil {
		return nil, err
	}
	t := &triggers.Trigger{Id: s.id("a1s"), FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(),
		Description: r.GetDescription(), Labels: r.GetLabels(), Rule: r.GetRule(), Status: triggers.Trigger_ACTIVE}
	s.triggers[t.Id] = t
	return s.op("Create trigger", &triggers.CreateTriggerMetadata{TriggerId: t.Id}, t), nil
}

func (x triggerService) List(_ context.Context, r *triggers.ListTriggersRequest) (*triggers.ListTriggersResponse, error) {
	out := &triggers.ListTriggersResponse{}
	for _, t := range x.s.triggers {
		if t.FolderId == r.GetFolderId() {
			out.Triggers = append(out.Triggers, proto.Clone(t).(*triggers.Trigger))
		}
	}
	sort.Slice(out.Triggers, func(i, j int) bool { return out.Triggers[i].Id < out.Triggers[j].Id })
	return out, nil
}

func (x triggerService) Update(_ context.Context, r *triggers.UpdateTriggerRequest) (*operation.Operation, error) {
	t := x.s.triggers[r.GetTriggerId()]
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "Trigger %s not found", r.GetTriggerId())
	}
	for _, path := range r.GetUpdateMask().GetPaths() {
		switch path {
		case "name":
			t.Name = r.GetName()
		case "description":
			t.Description = r.GetDescription()
		case "labels":
			t.Labels = r.GetLabels()
		case "rule":
			if err := x.check(r.GetRule()); err != nil {
				return nil, err
			}
			t.Rule = r.GetRule()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: unknown field %s", path)
		}
	}
	return x.s.op("Update trigger", &triggers.UpdateTriggerMetadata{TriggerId: t.Id}, t), nil
}

func (x triggerService) Delete(_ context.Context, r *triggers.DeleteTriggerRequest) (*operation.Operation, error) {
	if x.s.triggers[r.GetTriggerId()] == nil {
		return nil, status.Errorf(codes.NotFound, "Trigger %s not found", r.GetTriggerId())
	}
	delete(x.s.triggers, r.GetTriggerId())
	return x.s.op("Delete trigger", &triggers.DeleteTriggerMetadata{TriggerId: r.GetTriggerId()}, &triggers.Trigger{}), nil
}

// ---- API Gateway ----

type gatewayService struct {
	apigw.UnimplementedApiGatewayServiceServer
	s *Server
}

func checkSpec(spec string) error {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(spec), &doc); err != nil || doc["openapi"] == nil || doc["paths"] == nil {
		return status.Error(codes.InvalidArgument, "openapi_spec is not an OpenAPI 3.0 document")
	}
	return nil
}

func (x gatewayService) Create(_ context.Context, r *apigw.CreateApiGatewayRequest) (*operation.Operation, error) {
	s := x.s
	for _, g := range s.gateways {
		if g.FolderId == r.GetFolderId() && g.Name == r.GetName() {
			return nil, status.Errorf(codes.AlreadyExists, "API gateway with name %s already exists", r.GetName())
		}
	}
	if err := checkSpec(r.GetOpenapiSpec()); err != nil {
		return nil, err
	}
	id := s.id("d5d")
	g := &apigw.ApiGateway{Id: id, FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(), Description: r.GetDescription(),
		Labels: r.GetLabels(), Status: apigw.ApiGateway_ACTIVE, Domain: id + ".apigw.yandexcloud.net"}
	s.gateways[id] = g
	s.specs[id] = r.GetOpenapiSpec()
	return s.op("Create API gateway", &apigw.CreateApiGatewayMetadata{ApiGatewayId: id}, g), nil
}

func (x gatewayService) List(_ context.Context, r *apigw.ListApiGatewayRequest) (*apigw.ListApiGatewayResponse, error) {
	out := &apigw.ListApiGatewayResponse{}
	for _, g := range x.s.gateways {
		if g.FolderId == r.GetFolderId() {
			out.ApiGateways = append(out.ApiGateways, proto.Clone(g).(*apigw.ApiGateway))
		}
	}
	sort.Slice(out.ApiGateways, func(i, j int) bool { return out.ApiGateways[i].Id < out.ApiGateways[j].Id })
	return out, nil
}

func (x gatewayService) GetOpenapiSpec(_ context.Context, r *apigw.GetOpenapiSpecRequest) (*apigw.GetOpenapiSpecResponse, error) {
	spec, ok := x.s.specs[r.GetApiGatewayId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "API gateway %s not found", r.GetApiGatewayId())
	}
	return &apigw.GetOpenapiSpecResponse{ApiGatewayId: r.GetApiGatewayId(), OpenapiSpec: spec}, nil
}

func (x gatewayService) Update(_ context.Context, r *apigw.UpdateApiGatewayRequest) (*operation.Operation, error) {
	g := x.s.gateways[r.GetApiGatewayId()]
	if g == nil {
		return nil, status.Errorf(codes.NotFound, "API gateway %s not found", r.GetApiGatewayId())
	}
	for _, path := range r.GetUpdateMask().GetPaths() {
		switch path {
		case "name":
			g.Name = r.GetName()
		case "description":
			g.Description = r.GetDescription()
		case "labels":
			g.Labels = r.GetLabels()
		case "openapi_spec":
			if err := checkSpec(r.GetOpenapiSpec()); err != nil {
				return nil, err
			}
			x.s.specs[g.Id] = r.GetOpenapiSpec()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: unknown field %s", path)
		}
	}
	return x.s.op("Update API gateway", &apigw.UpdateApiGatewayMetadata{ApiGatewayId: g.Id}, g), nil
}

func (x gatewayService) Delete(_ context.Context, r *apigw.DeleteApiGatewayRequest) (*operation.Operation, error) {
	if x.s.gateways[r.GetApiGatewayId()] == nil {
		return nil, status.Errorf(codes.NotFound, "API gateway %s not found", r.GetApiGatewayId())
	}
	delete(x.s.gateways, r.GetApiGatewayId())
	delete(x.s.specs, r.GetApiGatewayId())
	return x.s.op("Delete API gateway", &apigw.DeleteApiGatewayMetadata{ApiGatewayId: r.GetApiGatewayId()}, &apigw.ApiGateway{}), nil
}
