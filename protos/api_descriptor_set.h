// The API's descriptors with their comments: a google.protobuf.
// FileDescriptorSet of protos/coach/v1/*.proto and their imports, compiled
// by protoc with --include_source_info at build time and embedded in
// coach_protos. The generated pool (DescriptorPool::generated_pool()) holds
// the same descriptors without SourceCodeInfo (protoc's C++ output drops
// comments); this set is where coach-proxy's OpenAPI document takes the
// proto comments from. Immutable, thread-safe.
#ifndef COACH_PROTOS_API_DESCRIPTOR_SET_H_
#define COACH_PROTOS_API_DESCRIPTOR_SET_H_

#include <string_view>

namespace coach::protos {

// The serialized FileDescriptorSet (static storage, never empty).
std::string_view ApiDescriptorSetWithSourceInfo();

}  // namespace coach::protos

#endif  // COACH_PROTOS_API_DESCRIPTOR_SET_H_
