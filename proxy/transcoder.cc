#include "proxy/transcoder.h"

#include <nlohmann/json.hpp>

#include <limits>
#include <type_traits>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/text.h"
#include "google/protobuf/util/json_util.h"
#include "proxy/json_printer.h"
#include "proxy/json_types.h"

namespace coach::proxy {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

absl::Status BadParameter(absl::string_view name, absl::string_view detail) {
  return WithField(
      absl::InvalidArgumentError(absl::StrCat(
          "Le paramètre « ", name, " » est invalide : ", detail, ".")),
      name);
}

// Adds `path` ("a.b") = `text` to the JSON object `root`, resolving each step
// against the message type, for the fields whose text form only the JSON
// mapping knows (bytes as base64, well-known types such as Timestamp).
absl::Status AddParameter(const Descriptor& type, absl::string_view path,
                          const std::string& text, nlohmann::json& root) {
  const std::vector<absl::string_view> steps = absl::StrSplit(path, '.');
  const Descriptor* current = &type;
  nlohmann::json* node = &root;
  for (size_t i = 0; i < steps.size(); ++i) {
    const FieldDescriptor* field = FindParameterField(*current, steps[i]);
    // Unknown parameters are ignored, like unknown body fields.
    if (field == nullptr) return absl::OkStatus();
    const bool last = i + 1 == steps.size();
    if (!last) {
      if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
          field->is_repeated()) {
        return BadParameter(path, "chemin de champ invalide");
      }
      current = field->message_type();
      node = &(*node)[field->json_name()];
      continue;
    }
    // google.protobuf.* messages (Timestamp, Duration, wrappers) have a text
    // form in the JSON mapping; other messages cannot be one parameter.
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        !absl::StartsWith(field->message_type()->full_name(),
                          "google.protobuf.")) {
      return BadParameter(path, "un objet ne se passe pas en paramètre");
    }
    nlohmann::json& slot = (*node)[field->json_name()];
    if (field->is_repeated()) {
      slot.push_back(text);
    } else {
      slot = text;
    }
  }
  return absl::OkStatus();
}

// Merges JSON text into `message` with protobuf's parser. Its types have
// been checked (a body's by CheckJsonTypes): what the parser still refuses
// is a format inside a string (a Timestamp, base64), answered with `error`.
absl::Status MergeJson(const std::string& json, Message& message,
                       absl::Status error) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  std::unique_ptr<Message> part(message.New());
  const auto status =
      google::protobuf::util::JsonStringToMessage(json, part.get(), options);
  // Not the parser's message: English, internal, and it may quote the value.
  if (!status.ok()) return error;
  message.MergeFrom(*part);
  return absl::OkStatus();
}

// The JSON mapping's names for what a parameter should have been.
absl::string_view Expected(const FieldDescriptor& field) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: return "un entier";
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: return "un nombre";
    case FieldDescriptor::CPPTYPE_BOOL: return "true ou false";
    case FieldDescriptor::CPPTYPE_ENUM: return "une valeur de la liste";
    default: return "une valeur valide";
  }
}

// A Reflection's setter (or adder, for a repeated field) of type T.
template <typename T>
using Setter = void (google::protobuf::Reflection::*)(Message*,
                                                      const FieldDescriptor*,
                                                      T) const;

// "-12", "+7", "12": an optional sign and ASCII digits.
bool IsDecimalInteger(absl::string_view text) {
  if (!text.empty() && (text[0] == '-' || text[0] == '+'))
    text.remove_prefix(1);
  return !text.empty() && absl::c_all_of(text, absl::ascii_isdigit);
}

// Sets the number `text` names (as absl reads one of type T) in `field`, or
// adds it if the field is repeated: false if `text` is not such a number.
template <typename T>
bool SetNumber(Message& message, const FieldDescriptor& field,
               const std::string& text, Setter<T> set, Setter<T> add) {
  T v;
  bool parsed;
  if constexpr (std::is_same_v<T, float>) {
    parsed = absl::SimpleAtof(text, &v);
  } else if constexpr (std::is_same_v<T, double>) {
    parsed = absl::SimpleAtod(text, &v);
  } else {
    parsed = absl::SimpleAtoi(text, &v);
    // An integer beyond the type's range is the range's end: the largest
    // value then meets the server's cap ("larger values are lowered, not
    // refused": limit, pageSize), as 1000 does.
    if (!parsed && IsDecimalInteger(text)) {
      v = text[0] == '-' ? std::numeric_limits<T>::min()
                         : std::numeric_limits<T>::max();
      parsed = true;
    }
  }
  if (!parsed) return false;
  const google::protobuf::Reflection& r = *message.GetReflection();
  (r.*(field.is_repeated() ? add : set))(&message, &field, v);
  return true;
}

// Sets (or adds) a bool from true/false/1/0, in any case: false if `text`
// is none of them.
bool SetBool(Message& message, const FieldDescriptor& field,
             const std::string& text) {
  const google::protobuf::Reflection& r = *message.GetReflection();
  const std::string lower = absl::AsciiStrToLower(text);
  bool v;
  if (lower == "true" || lower == "1") {
    v = true;
  } else if (lower == "false" || lower == "0") {
    v = false;
  } else {
    return false;
  }
  field.is_repeated() ? r.AddBool(&message, &field, v)
                      : r.SetBool(&message, &field, v);
  return true;
}

// Sets (or adds) an enum value named by its name or its number: false if
// `text` names none of the enum's values.
bool SetEnum(Message& message, const FieldDescriptor& field,
             const std::string& text) {
  const google::protobuf::Reflection& r = *message.GetReflection();
  const google::protobuf::EnumValueDescriptor* value =
      field.enum_type()->FindValueByName(text);
  int number;
  if (value == nullptr && absl::SimpleAtoi(text, &number)) {
    value = field.enum_type()->FindValueByNumber(number);
  }
  if (value == nullptr) return false;
  field.is_repeated() ? r.AddEnum(&message, &field, value)
                      : r.SetEnum(&message, &field, value);
  return true;
}

// Sets a scalar (non-bytes) field from the text of a parameter, directly by
// reflection: the common case, and far cheaper than a JSON round trip.
absl::Status SetScalar(Message& message, const FieldDescriptor& field,
                       absl::string_view name, const std::string& text) {
  using google::protobuf::Reflection;
  bool set = false;  // stays false when `text` is not of the field's type
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      if (!IsValidUtf8(text)) {
        return BadParameter(name, "caractères invalides (UTF-8 attendu)");
      }
      const Reflection& r = *message.GetReflection();
      field.is_repeated() ? r.AddString(&message, &field, text)
                          : r.SetString(&message, &field, text);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32:
      set = SetNumber<int32_t>(message, field, text, &Reflection::SetInt32,
                               &Reflection::AddInt32);
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      set = SetNumber<int64_t>(message, field, text, &Reflection::SetInt64,
                               &Reflection::AddInt64);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      set = SetNumber<uint32_t>(message, field, text, &Reflection::SetUInt32,
                                &Reflection::AddUInt32);
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      set = SetNumber<uint64_t>(message, field, text, &Reflection::SetUInt64,
                                &Reflection::AddUInt64);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      set = SetNumber<float>(message, field, text, &Reflection::SetFloat,
                             &Reflection::AddFloat);
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      set = SetNumber<double>(message, field, text, &Reflection::SetDouble,
                              &Reflection::AddDouble);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      set = SetBool(message, field, text);
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      set = SetEnum(message, field, text);
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE: break;
  }
  if (set) return absl::OkStatus();
  return WithField(absl::InvalidArgumentError(absl::StrCat(
                       "Le paramètre « ", name, " » n'a pas le type attendu (",
                       Expected(field), ").")),
                   name);
}

// Merges one query or path parameter ("limit", "filter.name") into
// `request`, converted to the field's type. Scalars are set by reflection;
// bytes and messages (well-known types such as Timestamp) go through the JSON
// mapping, which knows their text forms.
absl::Status MergeParameter(const Descriptor& type, absl::string_view name,
                            const std::string& value, Message& request) {
  const std::vector<absl::string_view> steps = absl::StrSplit(name, '.');
  Message* current = &request;
  for (size_t i = 0; i < steps.size(); ++i) {
    const FieldDescriptor* field =
        FindParameterField(*current->GetDescriptor(), steps[i]);
    // Unknown parameters are ignored, like unknown body fields.
    if (field == nullptr) return absl::OkStatus();
    const bool last = i + 1 == steps.size();
    const bool scalar = field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE &&
                        field->type() != FieldDescriptor::TYPE_BYTES;
    if (last && scalar) return SetScalar(*current, *field, name, value);
    if (last || field->is_repeated() ||
        field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      break;  // the JSON mapping decides below
    }
    current = current->GetReflection()->MutableMessage(current, field);
  }

  nlohmann::json object = nlohmann::json::object();
  if (absl::Status added = AddParameter(type, name, value, object);
      !added.ok()) {
    return added;
  }
  if (object.empty()) return absl::OkStatus();
  std::string json;
  try {
    json = object.dump();
  } catch (const nlohmann::json::exception&) {
    // dump() refuses invalid UTF-8.
    return BadParameter(name, "caractères invalides (UTF-8 attendu)");
  }
  return MergeJson(
      json, request,
      WithField(absl::InvalidArgumentError(absl::StrCat(
                    "Le paramètre « ", name, " » n'a pas le type attendu.")),
                name));
}

// `value` (a body for `type`) without the members that name no field of
// it, at every level of its known message fields.
nlohmann::json KnownFieldsOnly(const nlohmann::json& value,
                               const Descriptor& type) {
  if (!value.is_object()) return value;
  nlohmann::json known = nlohmann::json::object();
  for (const auto& [name, member] : value.items()) {
    const FieldDescriptor* field = FindParameterField(type, name);
    if (field == nullptr) continue;
    const Descriptor* message = field->message_type();
    if (message == nullptr || field->is_map() ||
        message->file()->package() == "google.protobuf") {
      known[name] = member;  // scalars, maps, well-known types: as they are
    } else if (member.is_array()) {
      nlohmann::json items = nlohmann::json::array();
      for (const nlohmann::json& item : member) {
        items.push_back(KnownFieldsOnly(item, *message));
      }
      known[name] = std::move(items);
    } else {
      known[name] = KnownFieldsOnly(member, *message);
    }
  }
  return known;
}

// A path variable's field path ("session_id") as the client knows it, in
// JSON names ("sessionId"), so that an error names it so.
std::string JsonPath(const Descriptor& type, absl::string_view path) {
  std::vector<std::string> steps;
  const Descriptor* current = &type;
  for (absl::string_view step : absl::StrSplit(path, '.')) {
    const FieldDescriptor* field =
        current != nullptr ? FindParameterField(*current, step) : nullptr;
    steps.push_back(field != nullptr ? field->json_name() : std::string(step));
    current = field != nullptr ? field->message_type() : nullptr;
  }
  return absl::StrJoin(steps, ".");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Message>> RequestFromHttp(
    const Route& route, const PathBindings& bindings,
    const std::multimap<std::string, std::string>& query,
    const std::string& body) {
  const Descriptor& type = *route.method->input_type();
  std::unique_ptr<Message> request(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(&type)
          ->New());

  // Query parameters first, then the body over them (a field the body sets
  // wins), then path variables over both. Query parameters thus fill only
  // what the body leaves out — `?userId=` on a PATCH with a JSON body.
  for (const auto& [name, value] : query) {
    COACH_RETURN_IF_ERROR(MergeParameter(type, name, value, *request));
  }
  if (!route.body.empty() &&
      body.find_first_not_of(" \t\r\n") != std::string::npos) {
    const nlohmann::json parsed =
        nlohmann::json::parse(body, /*cb=*/nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      return absl::InvalidArgumentError(
          "Le corps de la requête n'est pas un JSON valide.");
    }
    Message* target = request.get();
    if (route.body != "*") {
      target = request->GetReflection()->MutableMessage(
          request.get(), type.FindFieldByName(route.body));
    }
    COACH_RETURN_IF_ERROR(CheckJsonTypes(parsed, *target->GetDescriptor()));
    const absl::Status mismatch = absl::InvalidArgumentError(
        "Le corps de la requête ne correspond pas au format attendu.");
    if (!MergeJson(body, *target, mismatch).ok()) {
      // protobuf's parser refuses some JSON in the fields it would ignore
      // (an empty name, nesting past its depth limit): once more without
      // them, so that unknown fields are ignored whatever they hold.
      const nlohmann::json known =
          KnownFieldsOnly(parsed, *target->GetDescriptor());
      if (known == parsed) return mismatch;
      std::string json;
      try {
        json = known.dump();
      } catch (const nlohmann::json::exception&) {
        return mismatch;  // dump() refuses invalid UTF-8
      }
      COACH_RETURN_IF_ERROR(MergeJson(json, *target, mismatch));
    }
  }
  for (const auto& [path, value] : bindings) {
    // Refused: merged again under its JSON name, which the error then
    // names (a failed merge changes nothing; the name only matters then).
    if (!MergeParameter(type, path, value, *request).ok()) {
      COACH_RETURN_IF_ERROR(
          MergeParameter(type, JsonPath(type, path), value, *request));
    }
  }
  return request;
}

std::optional<std::string> ErrorField(const absl::Status& status) {
  const absl::optional<absl::Cord> field =
      status.GetPayload(kErrorFieldPayload);
  if (!field.has_value()) return std::nullopt;
  return std::string(*field);
}

absl::StatusOr<std::string> ResponseToJson(const Message& message) {
  std::string json;
  // The same bytes as below, printed directly (json_printer.h), for every
  // message it knows the shape of.
  if (PrintJson(message, &json)) return json;
  json.clear();
  google::protobuf::util::JsonPrintOptions options;
  // Clients expect 0, "" and [] to be there (the most common complaint about
  // grpc-gateway and Envoy's defaults).
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(std::string(status.message()));
  }
  return json;
}

}  // namespace coach::proxy
