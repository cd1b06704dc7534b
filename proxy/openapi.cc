#include "proxy/openapi.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coach/v1/error_reason.pb.h"
#include "google/api/field_behavior.pb.h"
#include "google/protobuf/descriptor.pb.h"

namespace coach::proxy {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::MethodDescriptor;
using Json = nlohmann::ordered_json;

constexpr char kErrorBody[] = "ErrorBody";

std::string SchemaRef(absl::string_view name) {
  return absl::StrCat("#/components/schemas/", name);
}

// The proto comments, looked up by full name in a pool built from the
// descriptor set with source info.
class Comments {
 public:
  absl::Status Load(const std::string& serialized) {
    if (serialized.empty()) return absl::OkStatus();
    google::protobuf::FileDescriptorSet set;
    if (!set.ParseFromString(serialized)) {
      return absl::InvalidArgumentError("descriptor set does not parse");
    }
    pool_ = std::make_unique<google::protobuf::DescriptorPool>();
    for (const google::protobuf::FileDescriptorProto& file : set.file()) {
      if (pool_->BuildFile(file) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("descriptor set: cannot build ", file.name()));
      }
    }
    return absl::OkStatus();
  }

  template <typename D>
  std::string Of(const D& descriptor) const {
    if (pool_ == nullptr) return "";
    const auto* twin = Find(descriptor);
    if (twin == nullptr) return "";
    google::protobuf::SourceLocation location;
    if (!twin->GetSourceLocation(&location)) return "";
    return Clean(location.leading_comments.empty() ? location.trailing_comments
                                                   : location.leading_comments);
  }

 private:
  const Descriptor* Find(const Descriptor& d) const {
    return pool_->FindMessageTypeByName(d.full_name());
  }
  const EnumDescriptor* Find(const EnumDescriptor& d) const {
    return pool_->FindEnumTypeByName(d.full_name());
  }
  const FieldDescriptor* Find(const FieldDescriptor& d) const {
    return pool_->FindFieldByName(d.full_name());
  }
  const MethodDescriptor* Find(const MethodDescriptor& d) const {
    return pool_->FindMethodByName(d.full_name());
  }
  const google::protobuf::ServiceDescriptor* Find(
      const google::protobuf::ServiceDescriptor& d) const {
    return pool_->FindServiceByName(d.full_name());
  }
  const google::protobuf::EnumValueDescriptor* Find(
      const google::protobuf::EnumValueDescriptor& d) const {
    return pool_->FindEnumValueByName(d.full_name());
  }

  // "// Lists a user's\n// sessions." arrives as " Lists a user's\n
  // sessions.\n": one space of indentation less, lines kept.
  static std::string Clean(const std::string& comment) {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(comment, '\n')) {
      if (absl::StartsWith(line, " ")) line.remove_prefix(1);
      lines.emplace_back(absl::StripTrailingAsciiWhitespace(line));
    }
    return std::string(absl::StripAsciiWhitespace(absl::StrJoin(lines, "\n")));
  }

  std::unique_ptr<google::protobuf::DescriptorPool> pool_;
};

// `schema` with `description` when there is one. A $ref takes no sibling
// in OpenAPI 3.0: it is wrapped in allOf then.
Json Described(Json schema, const std::string& description) {
  if (description.empty()) return schema;
  if (schema.contains("$ref")) {
    return Json{{"allOf", Json::array({std::move(schema)})},
                {"description", description}};
  }
  schema["description"] = description;
  return schema;
}

// The JSON forms of the well-known types (protobuf's JSON mapping); null
// for any other message.
Json WellKnownSchema(const Descriptor& type) {
  const std::string& name = type.full_name();
  if (name == "google.protobuf.Timestamp") {
    return {{"type", "string"}, {"format", "date-time"}};
  }
  if (name == "google.protobuf.Duration") {
    return {{"type", "string"},
            {"pattern", "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
            {"example", "1.5s"}};
  }
  if (name == "google.protobuf.FieldMask") {
    return {{"type", "string"}, {"example", "title,updatedAt"}};
  }
  if (name == "google.protobuf.Struct") {
    return {{"type", "object"}, {"additionalProperties", true}};
  }
  if (name == "google.protobuf.Value") return Json::object();
  if (name == "google.protobuf.ListValue") {
    return {{"type", "array"}, {"items", Json::object()}};
  }
  if (name == "google.protobuf.Empty") return {{"type", "object"}};
  if (name == "google.protobuf.Any") {
    return {{"type", "object"},
            {"properties", {{"@type", {{"type", "string"}}}}},
            {"required", Json::array({"@type"})},
            {"additionalProperties", true}};
  }
  if (name == "google.protobuf.DoubleValue" ||
      name == "google.protobuf.FloatValue") {
    return {{"type", "number"}};
  }
  if (name == "google.protobuf.Int64Value" ||
      name == "google.protobuf.UInt64Value") {
    return {{"type", "string"}, {"format", "int64"}};
  }
  if (name == "google.protobuf.Int32Value" ||
      name == "google.protobuf.UInt32Value") {
    return {{"type", "integer"}};
  }
  if (name == "google.protobuf.BoolValue") return {{"type", "boolean"}};
  if (name == "google.protobuf.StringValue") return {{"type", "string"}};
  if (name == "google.protobuf.BytesValue") {
    return {{"type", "string"}, {"format", "byte"}};
  }
  return nullptr;
}

// True if the server always sets `field` in an answer: marked
// google.api.field_behavior REQUIRED or OUTPUT_ONLY (AIP-203).
bool AlwaysSet(const FieldDescriptor& field) {
  const google::protobuf::FieldOptions& options = field.options();
  for (int i = 0; i < options.ExtensionSize(google::api::field_behavior); ++i) {
    const google::api::FieldBehavior behavior =
        options.GetExtension(google::api::field_behavior, i);
    if (behavior == google::api::REQUIRED ||
        behavior == google::api::OUTPUT_ONLY) {
      return true;
    }
  }
  return false;
}

class Generator {
 public:
  Generator(const RouteTable& routes, const OpenApiOptions& options)
      : routes_(routes), options_(options) {}

  absl::StatusOr<std::string> Run() {
    if (absl::Status loaded =
            comments_.Load(options_.descriptor_set_with_source_info);
        !loaded.ok()) {
      return loaded;
    }
    for (const Route& route : routes_.routes()) {
      MarkOutput(*route.method->output_type());
    }
    std::vector<const google::protobuf::ServiceDescriptor*> services;
    Json paths = Paths(services);
    Json schemas = Schemas();
    Json document = {
        {"openapi", "3.0.3"},
        {"info", Info(services)},
        {"servers", Json::array({{{"url", "/"}}})},
        {"tags", Tags(services)},
        {"security",
         Json::array({Json::object(), {{"bearerAuth", Json::array()}}})},
        {"paths", std::move(paths)},
        {"components", Components(std::move(schemas))}};
    return document.dump(2);
  }

 private:
  // Every route's operation (then coach-proxy's own paths), by path and
  // method; `services` gets the services of the routes, in their order.
  Json Paths(
      std::vector<const google::protobuf::ServiceDescriptor*>& services) {
    Json paths = Json::object();
    std::map<std::string, int> operation_ids;
    for (const Route& route : routes_.routes()) {
      const auto [path, parameters] = OpenApiPath(route);
      std::string id = absl::StrCat(route.method->service()->name(), "_",
                                    route.method->name());
      if (const int seen = operation_ids[id]++; seen > 0) {
        absl::StrAppend(&id, "_", seen);
      }
      paths[path][absl::AsciiStrToLower(route.http_method)] =
          Operation(route, id, parameters);
      if (std::find(services.begin(), services.end(),
                    route.method->service()) == services.end()) {
        services.push_back(route.method->service());
      }
    }
    AddOperationsPaths(paths);
    return paths;
  }

  // The schemas the operations referred to (and those they reach), with
  // ErrorBody, sorted by name. Once the operations are built.
  Json Schemas() {
    // Schemas are collected while the operations refer to them; a
    // worklist, since a message may refer to others (or to itself).
    while (!pending_.empty()) {
      const auto [name, type] = *pending_.begin();
      pending_.erase(pending_.begin());
      schemas_[name] = MessageSchema(*type);
    }
    schemas_[kErrorBody] = ErrorBodySchema();
    Json sorted_schemas = Json::object();
    for (auto& [name, schema] : schemas_)
      sorted_schemas[name] = std::move(schema);
    return sorted_schemas;
  }

  // One tag per service (its comment, else its name), then Operations.
  Json Tags(
      const std::vector<const google::protobuf::ServiceDescriptor*>& services) {
    Json tags = Json::array();
    for (const auto* service : services) {
      std::string description = comments_.Of(*service);
      if (description.empty()) {
        description =
            absl::StrCat("Le service gRPC ", service->full_name(), ".");
      }
      tags.push_back(Described({{"name", service->name()}}, description));
    }
    tags.push_back({{"name", "Operations"},
                    {"description",
                     "Sondes et documents de coach-proxy, hors de l'API."}});
    return tags;
  }

  // The document's info: title, version, and what the API is.
  Json Info(const std::vector<const google::protobuf::ServiceDescriptor*>&
                services) const {
    return {{"title", options_.title},
            {"version", options_.version},
            {"description",
             absl::StrCat(
                 "L'API REST de Coach AI Hub, servie par coach-proxy et "
                 "transcrite sur les RPC gRPC de ",
                 ServiceNames(services),
                 ". Ce document est généré au démarrage depuis les mêmes "
                 "descripteurs et annotations google.api.http que la table "
                 "des routes ; le JSON est le mapping JSON de protobuf "
                 "(noms lowerCamelCase, entiers 64 bits en chaînes, dates "
                 "RFC 3339, énumérations par leur nom). Toute erreur a le "
                 "corps ErrorBody.")}};
  }

  // The document's components: `schemas`, the error responses, headers,
  // shared parameters and the bearer scheme.
  static Json Components(Json schemas) {
    return {{"schemas", std::move(schemas)},
            {"responses", ErrorResponses()},
            {"headers", Headers()},
            {"parameters", SharedParameters()},
            {"securitySchemes",
             {{"bearerAuth",
               {{"type", "http"},
                {"scheme", "bearer"},
                {"bearerFormat", "JWT"},
                {"description",
                 "Un jeton porteur (JWT), requis quand coach-server vérifie "
                 "les jetons ; l'utilisateur est alors celui du jeton."}}}}}};
  }

  static std::string ServiceNames(
      const std::vector<const google::protobuf::ServiceDescriptor*>& all) {
    std::vector<std::string> names;
    for (const auto* service : all) names.push_back(service->full_name());
    return absl::StrJoin(names, ", ");
  }

  // Messages answered by a route, and those they reach: their always-printed
  // fields are required.
  void MarkOutput(const Descriptor& type) {
    if (!WellKnownSchema(type).is_null()) return;
    if (!output_.insert(type.full_name()).second) return;
    for (int i = 0; i < type.field_count(); ++i) {
      const FieldDescriptor& field = *type.field(i);
      if (field.cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
      if (field.is_map()) {
        const FieldDescriptor& value = *field.message_type()->map_value();
        if (value.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          MarkOutput(*value.message_type());
        }
        continue;
      }
      MarkOutput(*field.message_type());
    }
  }

  Json MessageRef(const Descriptor& type) {
    Json known = WellKnownSchema(type);
    if (!known.is_null()) return known;
    if (!schemas_.count(type.full_name())) {
      pending_.emplace(type.full_name(), &type);
      schemas_[type.full_name()] = nullptr;  // reserved
    }
    return {{"$ref", SchemaRef(type.full_name())}};
  }

  Json EnumRef(const EnumDescriptor& type) {
    if (!schemas_.count(type.full_name()))
      schemas_[type.full_name()] = EnumSchema(type);
    return {{"$ref", SchemaRef(type.full_name())}};
  }

  Json EnumSchema(const EnumDescriptor& type) const {
    Json names = Json::array();
    std::vector<std::string> lines;
    for (int i = 0; i < type.value_count(); ++i) {
      const auto& value = *type.value(i);
      names.push_back(value.name());
      const std::string comment = comments_.Of(value);
      if (!comment.empty()) {
        std::string flat = comment;
        std::replace(flat.begin(), flat.end(), '\n', ' ');
        lines.push_back(absl::StrCat("- `", value.name(), "`: ", flat));
      }
    }
    std::string description = comments_.Of(type);
    if (!lines.empty()) {
      absl::StrAppend(&description, description.empty() ? "" : "\n\n",
                      absl::StrJoin(lines, "\n"));
    }
    return Described({{"type", "string"}, {"enum", std::move(names)}},
                     description);
  }

  // One value of `field` (an element, for a repeated field).
  Json ValueSchema(const FieldDescriptor& field) {
    switch (field.type()) {
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32:
        return {{"type", "integer"}, {"format", "int32"}};
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32:
        return {{"type", "integer"},
                {"format", "int64"},
                {"minimum", 0},
                {"maximum", 4294967295u}};
      // The JSON mapping prints 64-bit integers as strings (JavaScript's
      // numbers lose precision past 2^53).
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
        return {{"type", "string"}, {"format", "int64"}};
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64:
        return {{"type", "string"}, {"format", "uint64"}};
      case FieldDescriptor::TYPE_FLOAT:
        return {{"type", "number"}, {"format", "float"}};
      case FieldDescriptor::TYPE_DOUBLE:
        return {{"type", "number"}, {"format", "double"}};
      case FieldDescriptor::TYPE_BOOL: return {{"type", "boolean"}};
      case FieldDescriptor::TYPE_STRING: return {{"type", "string"}};
      case FieldDescriptor::TYPE_BYTES:
        return {{"type", "string"}, {"format", "byte"}};
      case FieldDescriptor::TYPE_ENUM: return EnumRef(*field.enum_type());
      case FieldDescriptor::TYPE_MESSAGE:
      case FieldDescriptor::TYPE_GROUP:
        return MessageRef(*field.message_type());
    }
    return Json::object();
  }

  Json FieldSchema(const FieldDescriptor& field) {
    Json schema;
    if (field.is_map()) {
      schema = {{"type", "object"},
                {"additionalProperties",
                 ValueSchema(*field.message_type()->map_value())}};
    } else if (field.is_repeated()) {
      schema = {{"type", "array"}, {"items", ValueSchema(field)}};
    } else {
      schema = ValueSchema(field);
    }
    return Described(std::move(schema), comments_.Of(field));
  }

  // The properties of `type` but those in `skip` (top-level names bound by
  // the path), with `required` and the oneofs as "at most one of".
  Json ObjectSchema(const Descriptor& type, bool output,
                    const std::set<std::string>& skip = {}) {
    Json properties = Json::object();
    Json required = Json::array();
    for (int i = 0; i < type.field_count(); ++i) {
      const FieldDescriptor& field = *type.field(i);
      if (skip.count(field.name())) continue;
      // A member of an answer's oneof is described by its alternative.
      if (output && field.real_containing_oneof() != nullptr) continue;
      properties[field.json_name()] = FieldSchema(field);
      // What ResponseToJson always prints (fields without presence), and
      // what the server always sets (google.api.field_behavior REQUIRED or
      // OUTPUT_ONLY, AIP-203).
      if (output && (!field.has_presence() || AlwaysSet(field))) {
        required.push_back(field.json_name());
      }
    }
    Json schema = {{"type", "object"}, {"properties", std::move(properties)}};
    if (!required.empty()) schema["required"] = std::move(required);
    Json groups = Json::array();
    std::vector<std::string> notes;
    for (int i = 0; i < type.real_oneof_decl_count(); ++i) {
      const google::protobuf::OneofDescriptor& oneof = *type.oneof_decl(i);
      Json present = Json::array();
      std::vector<std::string> members;
      for (int j = 0; j < oneof.field_count(); ++j) {
        if (skip.count(oneof.field(j)->name())) continue;
        members.push_back(oneof.field(j)->json_name());
        present.push_back(
            {{"required", Json::array({oneof.field(j)->json_name()})},
             {"properties", {{oneof.field(j)->json_name(), Json::object()}}}});
      }
      if (output) {
        // An answer's oneof is always set (the server sends no empty
        // event): exactly one alternative, each an object of its member,
        // which generators type as a union ({delta} | {reply}).
        Json alternatives = Json::array();
        for (int j = 0; j < oneof.field_count(); ++j) {
          const FieldDescriptor& member = *oneof.field(j);
          alternatives.push_back(
              {{"type", "object"},
               {"properties", {{member.json_name(), FieldSchema(member)}}},
               {"required", Json::array({member.json_name()})}});
        }
        groups.push_back({{"oneOf", std::move(alternatives)}});
        notes.push_back(absl::StrCat("oneof `", oneof.name(),
                                     "` : exactement un de ",
                                     absl::StrJoin(members, ", "), "."));
        continue;
      }
      if (members.size() < 2) continue;
      // Exactly one of: one member present, or none.
      Json alternatives = present;
      alternatives.push_back({{"not", {{"anyOf", present}}}});
      groups.push_back({{"oneOf", std::move(alternatives)}});
      notes.push_back(absl::StrCat("oneof `", oneof.name(),
                                   "` : au plus un de ",
                                   absl::StrJoin(members, ", "), "."));
    }
    if (groups.size() == 1) {
      schema["oneOf"] = std::move(groups[0]["oneOf"]);
    } else if (!groups.empty()) {
      schema["allOf"] = std::move(groups);
    }
    std::string description = comments_.Of(type);
    for (const std::string& note : notes) {
      absl::StrAppend(&description, description.empty() ? "" : "\n\n", note);
    }
    return Described(std::move(schema), description);
  }

  Json MessageSchema(const Descriptor& type) {
    return ObjectSchema(type, output_.count(type.full_name()) > 0);
  }

  // "a.b" (proto names) -> "a.b" (JSON names), through `type`.
  static std::string JsonPath(const Descriptor& type,
                              absl::string_view field_path) {
    std::vector<std::string> names;
    const Descriptor* current = &type;
    for (absl::string_view step : absl::StrSplit(field_path, '.')) {
      const FieldDescriptor* field =
          current == nullptr ? nullptr : FindParameterField(*current, step);
      if (field == nullptr) {
        names.emplace_back(step);
        current = nullptr;
        continue;
      }
      names.push_back(field->json_name());
      current = field->message_type();
    }
    return absl::StrJoin(names, ".");
  }

  // The field at the end of `field_path` ("a.b"), as the route table
  // checked it.
  static const FieldDescriptor* FieldAt(const Descriptor& type,
                                        absl::string_view field_path) {
    const Descriptor* current = &type;
    const FieldDescriptor* field = nullptr;
    for (absl::string_view step : absl::StrSplit(field_path, '.')) {
      if (current == nullptr) return nullptr;
      field = FindParameterField(*current, step);
      if (field == nullptr) return nullptr;
      current = field->message_type();
    }
    return field;
  }

  // The OpenAPI path ("{sessionId}") and its path parameters.
  std::pair<std::string, Json> OpenApiPath(const Route& route) {
    const Descriptor& input = *route.method->input_type();
    std::string path;
    Json parameters = Json::array();
    int unbound = 0;
    for (absl::string_view segment :
         absl::StrSplit(route.path.text(), '/', absl::SkipEmpty())) {
      path += "/";
      if (segment == "*" || segment == "**") {
        // An unbound wildcard: a parameter the request does not use.
        const std::string name = absl::StrCat("segment", ++unbound);
        absl::StrAppend(&path, "{", name, "}");
        parameters.push_back({{"name", name},
                              {"in", "path"},
                              {"required", true},
                              {"schema", {{"type", "string"}}}});
        continue;
      }
      if (!absl::StartsWith(segment, "{")) {
        absl::StrAppend(&path, segment);
        continue;
      }
      absl::string_view inner = segment.substr(1, segment.size() - 2);
      const size_t equals = inner.find('=');
      const absl::string_view field_path = inner.substr(0, equals);
      const bool rest =
          equals != absl::string_view::npos && inner.substr(equals + 1) == "**";
      const std::string name = JsonPath(input, field_path);
      absl::StrAppend(&path, "{", name, "}");
      const FieldDescriptor* field = FieldAt(input, field_path);
      Json schema =
          field != nullptr ? ValueSchema(*field) : Json{{"type", "string"}};
      std::string description =
          field != nullptr ? comments_.Of(*field) : std::string();
      if (rest) {
        absl::StrAppend(&description, description.empty() ? "" : " ",
                        "(le reste du chemin, « / » compris)");
      }
      parameters.push_back(Described({{"name", name},
                                      {"in", "path"},
                                      {"required", true},
                                      {"schema", std::move(schema)}},
                                     description));
    }
    if (path.empty()) path.push_back('/');
    return {path, parameters};
  }

  // Query parameters for the fields of `type` under `prefix`: scalars,
  // enums, lists of them, the well-known types with a text form; other
  // messages by their fields ("a.b"), to a small depth.
  void QueryParameters(const Descriptor& type, const std::string& prefix,
                       const std::set<std::string>& skip, int depth,
                       Json& out) {
    for (int i = 0; i < type.field_count(); ++i) {
      const FieldDescriptor& field = *type.field(i);
      if (prefix.empty() && skip.count(field.name())) continue;
      if (field.is_map()) continue;  // no query form
      const std::string name = prefix + field.json_name();
      const bool message = field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
      if (message && WellKnownSchema(*field.message_type()).is_null()) {
        if (!field.is_repeated() && depth < 3) {
          QueryParameters(*field.message_type(), name + ".", {}, depth + 1,
                          out);
        }
        continue;
      }
      Json schema = field.is_repeated()
                        ? Json{{"type", "array"}, {"items", ValueSchema(field)}}
                        : ValueSchema(field);
      out.push_back(Described({{"name", name},
                               {"in", "query"},
                               {"required", false},
                               {"schema", std::move(schema)}},
                              comments_.Of(field)));
    }
  }

  Json Operation(const Route& route, const std::string& id,
                 Json path_parameters) {
    const MethodDescriptor& method = *route.method;
    const std::set<std::string> bound = PathBoundFields(route);
    Json parameters =
        OperationParameters(route, bound, std::move(path_parameters));

    const std::string comment = comments_.Of(method);
    Json operation = {
        {"operationId", id},
        {"tags", Json::array({method.service()->name()})},
        {"summary", Summary(comment, method.name())},
    };
    if (!comment.empty()) operation["description"] = comment;
    operation["parameters"] = std::move(parameters);
    if (!route.body.empty()) {
      operation["requestBody"] = RequestBody(route, bound);
    }
    operation["responses"] = Responses(method, /*writes=*/!route.body.empty());
    // The headers the method writes (coach.v1.response_headers).
    for (const HeaderMapping& header : route.response_headers) {
      operation["responses"]["200"]["headers"][header.http] = {
          {"description", header.description},
          {"schema", {{"type", "string"}}}};
    }
    return operation;
  }

  // Top-level fields of the input the route's path binds: neither query nor
  // body.
  static std::set<std::string> PathBoundFields(const Route& route) {
    const Descriptor& input = *route.method->input_type();
    std::set<std::string> bound;
    for (const std::string& field_path : route.path.FieldPaths()) {
      const FieldDescriptor* field =
          FindParameterField(input, *absl::StrSplit(field_path, '.').begin());
      if (field != nullptr) bound.insert(field->name());
    }
    return bound;
  }

  // An operation's parameters: the request id, the path's, then the query's
  // (the input's fields neither `bound` nor the body).
  Json OperationParameters(const Route& route,
                           const std::set<std::string>& bound,
                           Json path_parameters) {
    Json parameters =
        Json::array({{{"$ref", "#/components/parameters/RequestId"}}});
    for (Json& parameter : path_parameters)
      parameters.push_back(std::move(parameter));
    if (route.body != "*") {
      std::set<std::string> skip = bound;
      if (!route.body.empty()) skip.insert(route.body);
      QueryParameters(*route.method->input_type(), "", skip, 0, parameters);
    }
    // The headers the method reads (coach.v1.request_headers).
    for (const HeaderMapping& header : route.request_headers) {
      parameters.push_back({{"name", header.http},
                            {"in", "header"},
                            {"required", false},
                            {"description", header.description},
                            {"schema", {{"type", "string"}}}});
    }
    return parameters;
  }

  // The requestBody of a route with a body: the whole input but the fields
  // the path binds, or the one field `body` names.
  Json RequestBody(const Route& route, const std::set<std::string>& bound) {
    const Descriptor& input = *route.method->input_type();
    Json schema;
    if (route.body == "*") {
      schema = bound.empty() ? MessageRef(input)
                             : ObjectSchema(input, /*output=*/false, bound);
    } else {
      schema = MessageRef(*input.FindFieldByName(route.body)->message_type());
    }
    return {
        {"required", true},
        {"content", {{"application/json", {{"schema", std::move(schema)}}}}}};
  }

  // An operation's responses: its 200, then a reference to each error
  // status it may answer (those about a body only if it `writes` one).
  Json Responses(const MethodDescriptor& method, bool writes) {
    Json responses = Json::object();
    responses["200"] = SuccessResponse(method);
    for (const ErrorStatus& error : ErrorStatuses()) {
      if (error.with_body_only && !writes) continue;
      responses[std::to_string(error.status)] = {
          {"$ref", absl::StrCat("#/components/responses/", error.name)}};
    }
    return responses;
  }

  // The 200 response of `method`: a download (a streamed HttpBody), an SSE
  // stream, or one JSON message.
  Json SuccessResponse(const MethodDescriptor& method) {
    if (method.server_streaming() &&
        method.output_type()->full_name() == "google.api.HttpBody") {
      // A download: one body sent in pieces (its type and shape are the
      // method's, described in its comment).
      return {
          {"description",
           "Un document JSON, envoyé par morceaux (Transfer-Encoding: "
           "chunked) ; une erreur avant le premier morceau est la réponse "
           "JSON d'erreur habituelle, une erreur après lui interrompt le "
           "document (il est alors incomplet)."},
          {"headers",
           {{"X-Request-Id", {{"$ref", "#/components/headers/X-Request-Id"}}}}},
          {"content",
           {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
    }
    if (method.server_streaming()) return EventStreamResponse(method);
    return {
        {"description", "Succès."},
        {"headers",
         {{"X-Request-Id", {{"$ref", "#/components/headers/X-Request-Id"}}}}},
        {"content",
         {{"application/json",
           {{"schema", MessageRef(*method.output_type())}}}}}};
  }

  // The 200 response of a server-streaming method: Server-Sent Events.
  Json EventStreamResponse(const MethodDescriptor& method) {
    const Json event = MessageRef(*method.output_type());
    return {
        {"description",
         absl::StrCat(
             "Un flux Server-Sent Events : un événement `data: <JSON>` par "
             "message ",
             method.output_type()->full_name(), " (schéma ",
             event["$ref"].get<std::string>(),
             "), dans l'ordre. Une erreur avant le premier événement est "
             "la réponse JSON d'erreur habituelle (statut 4xx/5xx) ; "
             "après lui, un événement `event: error` dont `data:` est un "
             "ErrorBody, puis la fin du flux. Un commentaire `: keep-alive` "
             "arrive quand le flux est inactif. Fermer la connexion annule "
             "l'appel.")},
        {"headers",
         {{"X-Request-Id", {{"$ref", "#/components/headers/X-Request-Id"}}}}},
        {"content",
         {{"text/event-stream",
           // The body is text (the SSE wire format), which every tool
           // accepts as a string: Prism validates it as one, openapi-fetch
           // reads it with parseAs "stream" or "text", generators type it
           // `string`. The events' schemas, which OpenAPI 3.0 cannot attach
           // to a stream (3.2's itemSchema), are named by extensions:
           // x-event-schema for each `data:` of a message event,
           // x-error-event-schema for `event: error`'s.
           {{"schema",
             {{"type", "string"},
              {"description",
               absl::StrCat("Événements SSE (text/event-stream) : chaque "
                            "`data:` d'un événement sans nom est un ",
                            method.output_type()->full_name(),
                            " en JSON ; `event: error` porte un ErrorBody.")}}},
            {"x-event-schema", event},
            {"x-error-event-schema", {{"$ref", SchemaRef(kErrorBody)}}}}}}}};
  }

  // The comment's first sentence, else the method's name.
  static std::string Summary(const std::string& comment,
                             const std::string& fallback) {
    if (comment.empty()) return fallback;
    std::string flat = comment;
    std::replace(flat.begin(), flat.end(), '\n', ' ');
    const size_t end = flat.find(". ");
    return end == std::string::npos ? flat : flat.substr(0, end + 1);
  }

  // An error status of the document: the reasons answered with it, from
  // coach.v1.ErrorReason's options (error_reason.proto), none by name here.
  struct ErrorStatus {
    int status = 0;
    std::string name;            // the component's name: the HTTP reason phrase
    std::string description;     // its reasons, "label (REASON)", and notes
    bool with_body_only = true;  // only on routes that take a body
  };

  // The name of an HTTP status's component (RFC 9110's reason phrase).
  static std::string StatusComponentName(int status) {
    switch (status) {
      case 400: return "BadRequest";
      case 401: return "Unauthorized";
      case 402: return "PaymentRequired";
      case 403: return "Forbidden";
      case 404: return "NotFound";
      case 409: return "Conflict";
      case 413: return "ContentTooLarge";
      case 411: return "LengthRequired";
      case 414: return "UriTooLong";
      case 415: return "UnsupportedMediaType";
      case 431: return "RequestHeaderFieldsTooLarge";
      case 422: return "UnprocessableContent";
      case 429: return "TooManyRequests";
      case 500: return "InternalServerError";
      case 503: return "ServiceUnavailable";
      case 504: return "GatewayTimeout";
      default: return absl::StrCat("Status", status);
    }
  }

  // What the body or headers of an HTTP status add, whatever the reason.
  static const char* StatusNote(int status) {
    switch (status) {
      case 400:
        return " `field` nomme le champ en faute par son nom JSON quand il y "
               "en a un.";
      case 429: return " `Retry-After` donne l'attente en secondes.";
      default: return "";
    }
  }

  // Every REST status a reason goes out with, in order, each with its
  // reasons.
  static const std::vector<ErrorStatus>& ErrorStatuses() {
    static const std::vector<ErrorStatus>* const statuses = [] {
      std::map<int, ErrorStatus> by_status;
      std::map<int, std::vector<std::string>> reasons;
      const google::protobuf::EnumDescriptor& type =
          *v1::ErrorReason_descriptor();
      for (int i = 0; i < type.value_count(); ++i) {
        const google::protobuf::EnumValueDescriptor& value = *type.value(i);
        const google::protobuf::EnumValueOptions& options = value.options();
        const int status = options.GetExtension(v1::http_status);
        if (value.number() == 0 || status == 0 ||
            options.GetExtension(v1::openapi_omit)) {
          continue;
        }
        ErrorStatus& error = by_status[status];
        error.status = status;
        error.with_body_only =
            error.with_body_only && options.GetExtension(v1::body_routes_only);
        reasons[status].push_back(absl::StrCat(
            options.GetExtension(v1::http_label), " (", value.name(), ")"));
      }
      // 414, answered by the HTTP layer for any route, has no reason of
      // its own (INVALID_ARGUMENT, labelled apart).
      by_status[414].status = 414;
      by_status[414].with_body_only = false;
      reasons[414].push_back("URL trop longue (INVALID_ARGUMENT)");
      auto* out = new std::vector<ErrorStatus>;
      for (auto& [status, error] : by_status) {
        error.name = StatusComponentName(status);
        error.description = absl::StrCat(absl::StrJoin(reasons[status], " ; "),
                                         ".", StatusNote(status));
        out->push_back(std::move(error));
      }
      return out;
    }();
    return *statuses;
  }

  static Json ErrorResponses() {
    Json responses = Json::object();
    for (const ErrorStatus& error : ErrorStatuses()) {
      Json headers = {
          {"X-Request-Id", {{"$ref", "#/components/headers/X-Request-Id"}}}};
      if (error.status == 401) {
        headers["WWW-Authenticate"] = {
            {"description",
             "`Bearer`, ou `Bearer error=\"invalid_token\"` pour un jeton "
             "envoyé et refusé (RFC 6750)."},
            {"schema", {{"type", "string"}}}};
      }
      if (error.status == 429) {
        headers["Retry-After"] = {
            {"description", "Secondes à attendre avant de réessayer."},
            {"schema", {{"type", "integer"}, {"minimum", 1}}}};
      }
      responses[error.name] = {
          {"description", error.description},
          {"headers", std::move(headers)},
          {"content",
           {{"application/json",
             {{"schema", {{"$ref", SchemaRef(kErrorBody)}}}}}}}};
    }
    return responses;
  }

  Json ErrorBodySchema() {
    return {
        {"type", "object"},
        {"description",
         "Le corps de toute erreur, selon la page de l'API : `error`, "
         "`code`, `message`, et `field` quand une erreur 400 porte sur un "
         "champ (un client qui l'ignore continue de fonctionner)."},
        {"required", Json::array({"error", "code", "message"})},
        {"properties",
         {{"error",
           {{"type", "string"},
            {"description", "Libellé court en français."},
            {"example", "Crédits insuffisants"}}},
          {"code", EnumRef(*v1::ErrorReason_descriptor())},
          {"message",
           {{"type", "string"},
            {"description", "Détail en français, à montrer à l'utilisateur."}}},
          {"field",
           {{"type", "string"},
            {"description",
             "Le champ en faute, par son nom JSON (`userId`, `message`, "
             "`limit`…) ; seulement sur une erreur qui en nomme un."},
            {"example", "message"}}}}},
    };
  }

  static Json Headers() {
    return {{"X-Request-Id",
             {{"description",
               "L'identifiant de la requête (le vôtre s'il est simple), "
               "aussi dans les journaux des deux processus."},
              {"schema", {{"type", "string"}}}}}};
  }

  static Json SharedParameters() {
    return {{"RequestId",
             {{"name", "X-Request-Id"},
              {"in", "header"},
              {"required", false},
              {"description",
               "Un identifiant de requête à reprendre (lettres, chiffres, "
               "« - », « _ », « . » ; sinon un nouveau est tiré)."},
              {"schema", {{"type", "string"}}}}}};
  }

  // /healthz, /readyz, /openapi.json: the proxy's own routes (its metrics
  // are on a listener of their own, not in this API).
  static void AddOperationsPaths(Json& paths) {
    const Json request_id = {{"$ref", "#/components/parameters/RequestId"}};
    const Json status_schema = {
        {"type", "object"},
        {"required", Json::array({"status"})},
        {"properties",
         {{"status",
           {{"type", "string"}, {"enum", Json::array({"SERVING"})}}}}}};
    const auto operation = [&](const char* id, const char* summary,
                               Json ok_content, bool may_fail) {
      // 400: a request the HTTP layer cannot read (malformed, too large).
      Json responses = {
          {"200",
           {{"description", "Succès."}, {"content", std::move(ok_content)}}},
          {"400", {{"$ref", "#/components/responses/BadRequest"}}}};
      if (may_fail) {
        responses["503"] = {
            {"$ref", "#/components/responses/ServiceUnavailable"}};
      }
      return Json{{"operationId", id},
                  {"tags", Json::array({"Operations"})},
                  {"summary", summary},
                  {"security", Json::array()},
                  {"parameters", Json::array({request_id})},
                  {"responses", std::move(responses)}};
    };
    paths["/healthz"]["get"] =
        operation("Healthz", "Vivant : coach-proxy répond (sonde de vivacité).",
                  {{"application/json", {{"schema", status_schema}}}}, false);
    paths["/readyz"]["get"] = operation(
        "Readyz",
        "Prêt : coach-server répond SERVING à son contrôle de santé (sonde "
        "de disponibilité).",
        {{"application/json", {{"schema", status_schema}}}}, true);
    paths["/openapi.json"]["get"] = operation(
        "OpenApi", "Ce document (OpenAPI 3.0.3).",
        {{"application/json", {{"schema", {{"type", "object"}}}}}}, false);
  }

  const RouteTable& routes_;
  const OpenApiOptions& options_;
  Comments comments_;
  std::set<std::string> output_;
  // name -> schema; null while a message's is pending.
  std::map<std::string, Json> schemas_;
  std::map<std::string, const Descriptor*> pending_;
};

}  // namespace

absl::StatusOr<std::string> OpenApiDocument(const RouteTable& routes,
                                            const OpenApiOptions& options) {
  return Generator(routes, options).Run();
}

}  // namespace coach::proxy
