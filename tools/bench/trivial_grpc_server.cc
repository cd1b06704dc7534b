// trivial-grpc: the ceiling for coach-server. A gRPC server built like
// coach-server (same builder settings, reflection, health) but serving
// nothing else: grpc.health.v1.Health/Check is the empty unary call that
// grpc-load --rpc=health measures against it.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Listen address (port printed)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return 1;
  server->GetHealthCheckService()->SetServingStatus("", true);
  std::printf("trivial-grpc listening on %s (port %d)\n",
              absl::GetFlag(FLAGS_listen).c_str(), port);
  std::fflush(stdout);
  server->Wait();
  return 0;
}
