#include "proxy/json_types.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "proxy/route_table.h"

namespace coach::proxy {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

// Where a value stands in its field, for the wording of an error.
enum class Placement { kField, kElement, kMapValue };

// The message types being checked, outer first: a recursive type is checked
// once, deeper levels being left to the parser (whose depth is bounded).
using Stack = std::vector<const Descriptor*>;

bool IsWellKnown(const Descriptor& type) {
  return type.file()->package() == "google.protobuf";
}

// The field a wrapper (google.protobuf.Int32Value...) stands for, or null.
const FieldDescriptor* WrappedField(const Descriptor& type) {
  if (!IsWellKnown(type) || !absl::EndsWith(type.name(), "Value") ||
      type.name() == "Value" || type.name() == "ListValue" ||
      type.field_count() != 1) {
    return nullptr;
  }
  return type.FindFieldByName("value");
}

template <typename Int>
std::string IntegerPhrase(bool plural) {
  return absl::StrCat(plural ? "des nombres entiers" : "un nombre entier",
                      " entre ", std::numeric_limits<Int>::min(), " et ",
                      std::numeric_limits<Int>::max());
}

// What one value of `field` must be, as « doit être … » / « doivent
// être … » end.
std::string Phrase(const FieldDescriptor& field, bool plural) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      if (field.type() == FieldDescriptor::TYPE_BYTES) {
        return plural ? "des chaînes de caractères (base64)"
                      : "une chaîne de caractères (base64)";
      }
      return plural ? "des chaînes de caractères" : "une chaîne de caractères";
    case FieldDescriptor::CPPTYPE_INT32: return IntegerPhrase<int32_t>(plural);
    case FieldDescriptor::CPPTYPE_INT64: return IntegerPhrase<int64_t>(plural);
    case FieldDescriptor::CPPTYPE_UINT32:
      return IntegerPhrase<uint32_t>(plural);
    case FieldDescriptor::CPPTYPE_UINT64:
      return IntegerPhrase<uint64_t>(plural);
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return plural ? "des nombres" : "un nombre";
    case FieldDescriptor::CPPTYPE_BOOL:
      return plural ? "des booléens (true ou false)"
                    : "un booléen (true ou false)";
    case FieldDescriptor::CPPTYPE_ENUM: {
      std::vector<std::string> names;
      for (int i = 0; i < field.enum_type()->value_count(); ++i) {
        names.push_back(field.enum_type()->value(i)->name());
      }
      return absl::StrCat(plural ? "des valeurs" : "une valeur", " parmi ",
                          absl::StrJoin(names, ", "));
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const Descriptor& type = *field.message_type();
      if (const FieldDescriptor* wrapped = WrappedField(type)) {
        return Phrase(*wrapped, plural);
      }
      const std::string& name = type.full_name();
      if (name == "google.protobuf.Timestamp") {
        return plural ? "des dates RFC 3339 (chaînes de caractères)"
                      : "une date RFC 3339 (chaîne de caractères)";
      }
      if (name == "google.protobuf.Duration") {
        return plural ? "des durées telles que \"1.5s\" (chaînes de caractères)"
                      : "une durée telle que \"1.5s\" (chaîne de caractères)";
      }
      if (name == "google.protobuf.FieldMask") {
        return plural ? "des chaînes de caractères"
                      : "une chaîne de caractères";
      }
      if (name == "google.protobuf.ListValue") {
        return plural ? "des listes (tableaux JSON)"
                      : "une liste (tableau JSON)";
      }
      return plural ? "des objets JSON" : "un objet JSON";
    }
  }
  return plural ? "des valeurs valides" : "une valeur valide";
}

// The field's error: `path` (with an index for an element) goes in the
// payload; the message names the field itself.
absl::Status TypeError(const FieldDescriptor& field, absl::string_view path,
                       absl::string_view field_path, Placement placement) {
  std::string message;
  switch (placement) {
    case Placement::kField:
      message = absl::StrCat("Le champ ", field_path, " doit être ",
                             Phrase(field, false), ".");
      break;
    case Placement::kElement:
      message = absl::StrCat("Les éléments du champ ", field_path,
                             " doivent être ", Phrase(field, true), ".");
      break;
    case Placement::kMapValue:
      message = absl::StrCat("Les valeurs du champ ", field_path,
                             " doivent être ", Phrase(field, true), ".");
      break;
  }
  return WithField(absl::InvalidArgumentError(message), path);
}

// An integer of [min, max]: a JSON integer, a float with no fraction (1e3),
// or either quoted.
bool FitsInteger(const json& value, long double min, long double max) {
  long double v = 0;
  if (value.is_number_unsigned()) {
    v = static_cast<long double>(value.get<uint64_t>());
  } else if (value.is_number_integer()) {
    v = static_cast<long double>(value.get<int64_t>());
  } else if (value.is_number_float()) {
    const double d = value.get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d) return false;
    v = d;
  } else if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    int64_t i;
    uint64_t u;
    if (absl::SimpleAtoi(text, &i)) {
      v = static_cast<long double>(i);
    } else if (absl::SimpleAtoi(text, &u)) {
      v = static_cast<long double>(u);
    } else {
      return false;
    }
  } else {
    return false;
  }
  return v >= min && v <= max;
}

template <typename Int>
bool FitsInteger(const json& value) {
  return FitsInteger(value, std::numeric_limits<Int>::min(),
                     std::numeric_limits<Int>::max());
}

bool FitsNumber(const json& value, bool single_precision) {
  double v = 0;
  if (value.is_number()) {
    v = value.get<double>();
  } else if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (text == "NaN" || text == "Infinity" || text == "-Infinity") return true;
    if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) return false;
  } else {
    return false;
  }
  return !single_precision || std::fabs(v) <= FLT_MAX;
}

bool FitsEnum(const json& value, const FieldDescriptor& field) {
  if (value.is_string()) {
    return field.enum_type()->FindValueByName(
               value.get_ref<const std::string&>()) != nullptr;
  }
  // Open enums (proto3) take numbers they do not name.
  return value.is_number_integer() && FitsInteger<int32_t>(value);
}

absl::Status CheckMessage(const json& object, const Descriptor& type,
                          const std::string& prefix, Stack& stack);

// One value of `field` (the field's own, an element or a map value).
absl::Status CheckOne(const json& value, const FieldDescriptor& field,
                      const std::string& path, const std::string& field_path,
                      Placement placement, Stack& stack) {
  bool fits = false;
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: fits = value.is_string(); break;
    case FieldDescriptor::CPPTYPE_INT32:
      fits = FitsInteger<int32_t>(value);
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      fits = FitsInteger<int64_t>(value);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      fits = FitsInteger<uint32_t>(value);
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      fits = FitsInteger<uint64_t>(value);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT: fits = FitsNumber(value, true); break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      fits = FitsNumber(value, false);
      break;
    case FieldDescriptor::CPPTYPE_BOOL: fits = value.is_boolean(); break;
    case FieldDescriptor::CPPTYPE_ENUM:
      // google.protobuf.NullValue is written null.
      fits = FitsEnum(value, field) ||
             (value.is_null() &&
              field.enum_type()->full_name() == "google.protobuf.NullValue");
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const Descriptor& type = *field.message_type();
      const std::string& name = type.full_name();
      if (const FieldDescriptor* wrapped = WrappedField(type)) {
        return CheckOne(value, *wrapped, path, field_path, placement, stack);
      }
      if (name == "google.protobuf.Value") return absl::OkStatus();
      if (name == "google.protobuf.Timestamp" ||
          name == "google.protobuf.Duration" ||
          name == "google.protobuf.FieldMask") {
        fits = value.is_string();
      } else if (name == "google.protobuf.ListValue") {
        fits = value.is_array();
      } else if (!value.is_object()) {
        fits = false;
      } else if (IsWellKnown(type)) {
        fits = true;  // Struct, Any, Empty: the parser reads them.
      } else {
        return CheckMessage(value, type, path, stack);
      }
      break;
    }
  }
  if (fits) return absl::OkStatus();
  return TypeError(field, path, field_path, placement);
}

// A map or a list whose JSON is not an object or an array.
absl::Status KindError(const std::string& path, absl::string_view kind) {
  return WithField(absl::InvalidArgumentError(absl::StrCat(
                       "Le champ ", path, " doit être ", kind, ".")),
                   path);
}

absl::Status CheckField(const json& value, const FieldDescriptor& field,
                        const std::string& path, Stack& stack) {
  // null is the field's default, whatever its type.
  if (value.is_null()) return absl::OkStatus();
  if (field.is_map()) {
    if (!value.is_object()) {
      return KindError(path, "un objet JSON");
    }
    const FieldDescriptor& mapped = *field.message_type()->map_value();
    for (const auto& [key, item] : value.items()) {
      COACH_RETURN_IF_ERROR(CheckOne(item, mapped, absl::StrCat(path, ".", key),
                                     path, Placement::kMapValue, stack));
    }
    return absl::OkStatus();
  }
  if (field.is_repeated()) {
    if (!value.is_array()) {
      return KindError(path, "une liste (tableau JSON)");
    }
    for (size_t i = 0; i < value.size(); ++i) {
      COACH_RETURN_IF_ERROR(CheckOne(value[i], field,
                                     absl::StrCat(path, "[", i, "]"), path,
                                     Placement::kElement, stack));
    }
    return absl::OkStatus();
  }
  return CheckOne(value, field, path, path, Placement::kField, stack);
}

absl::Status CheckMessage(const json& object, const Descriptor& type,
                          const std::string& prefix, Stack& stack) {
  for (const Descriptor* outer : stack) {
    if (outer == &type) return absl::OkStatus();
  }
  stack.push_back(&type);
  for (const auto& [key, value] : object.items()) {
    const FieldDescriptor* field = FindParameterField(type, key);
    // Unknown fields are ignored, as by the parser.
    if (field == nullptr) continue;
    const std::string path =
        prefix.empty() ? field->json_name()
                       : absl::StrCat(prefix, ".", field->json_name());
    if (absl::Status checked = CheckField(value, *field, path, stack);
        !checked.ok()) {
      stack.pop_back();
      return checked;
    }
  }
  stack.pop_back();
  return absl::OkStatus();
}

}  // namespace

absl::Status WithField(absl::Status status, absl::string_view field) {
  status.SetPayload(kErrorFieldPayload, absl::Cord(field));
  return status;
}

absl::Status CheckJsonTypes(const json& value, const Descriptor& type) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        "Le corps de la requête doit être un objet JSON.");
  }
  Stack stack;
  return CheckMessage(value, type, "", stack);
}

}  // namespace coach::proxy
