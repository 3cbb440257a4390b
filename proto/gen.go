// Package proto holds the .proto sources of Vigil's gRPC API; the generated
// Go code lives beside them in vigil/v1.
package proto

//go:generate protoc --proto_path=. --plugin=protoc-gen-go=../bin/protoc-gen-go --plugin=protoc-gen-go-grpc=../bin/protoc-gen-go-grpc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative vigil/v1/incident.proto vigil/v1/agent.proto vigil/v1/response.proto vigil/v1/fleet.proto vigil/v1/rules.proto vigil/v1/enroll.proto
