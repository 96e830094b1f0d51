# Regenerates the host<->plugin protocol code. Run from the repository root:
#   make -f sdk/proto/proto.mk
# Needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH:
#   apt-get install -y protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PROTO_DIR := sdk/proto
export PATH := $(shell go env GOPATH)/bin:$(PATH)

.PHONY: proto
proto:
	protoc -I $(PROTO_DIR) \
		--go_out=$(PROTO_DIR) --go_opt=paths=source_relative \
		--go-grpc_out=$(PROTO_DIR) --go-grpc_opt=paths=source_relative \
		$(PROTO_DIR)/herald_plugin.proto
