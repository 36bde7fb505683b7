// safetensors: save and load named tensors in Hugging Face's safetensors format.
//
// Format (https://github.com/huggingface/safetensors, "Format"):
//   8 bytes     N, the header length, uint64 little endian
//   N bytes     JSON object, UTF-8: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//               ..., "__metadata__": {"key": "value", ...}}  (may end in spaces: we pad to 8 bytes)
//   the rest    the data section: every tensor's bytes, row-major, little endian, at [begin, end)
//               relative to the section's start
// dtypes: F32 F64 F16 BF16 I32 I64 U8 BOOL (one byte, 0 or 1).
//
//   save_safetensors("model.safetensors", {{"w", w}, {"b", b}}, {{"epoch", "3"}});
//   for (auto& [name, t] : load_safetensors("model.safetensors")) ...
//
// Saving writes a temporary file in the target's directory and renames it over the target, so a
// reader never sees half a file and a failed save leaves neither a partial target nor the temporary
// behind (an existing target stays as it was). Non-contiguous tensors are written row-major.
// Loading validates strictly, as the reference implementation does, and names the file in every
// error: header length beyond the file, JSON syntax, unknown dtype, missing or extra fields, shape
// and byte count disagreeing, offsets out of range, overlapping or leaving holes, trailing bytes.
// Tensors come back in data order (the order they were saved in).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "strata/tensor/tensor.hpp"

namespace strata {

static_assert(std::endian::native == std::endian::little, "safetensors: data is little endian, like this host must be");

namespace detail {

inline const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
    case DType::b8: return "BOOL";
  }
  return "?";
}

inline bool safetensors_dtype_from(const std::string& s, DType& t) {
  for (DType d : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8})
    if (s == safetensors_dtype_name(d)) {
      t = d;
      return true;
    }
  return false;
}

/// s as a JSON string literal.
inline std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

/// A parsed JSON value (only what a safetensors header needs; numbers are kept as text).
struct Json {
  enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
  std::string text;  // string contents, or the number as written
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;  // in file order
};

/// Recursive-descent parser for RFC 8259 JSON; errors name the file and the byte offset.
class JsonParser {
 public:
  JsonParser(const std::string& s, const std::string& file) : s_(s), file_(file) {}

  Json parse_document() {
    Json v = value(0);
    skip_ws();
    if (i_ != s_.size()) bad("unexpected characters after the JSON object");
    return v;
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail("load_safetensors", "got a bad JSON header in '", file_, "' at byte ", i_, ": ", what,
         ", expected the JSON object of a safetensors header");
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) bad(std::string("expected '") + c + "'");
  }

  Json value(int depth) {
    if (depth > 64) bad("nesting deeper than 64");
    skip_ws();
    if (i_ >= s_.size()) bad("unexpected end of header");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = Json::Kind::object;
      ++i_;
      if (eat('}')) return v;
      do {
        skip_ws();
        std::string key = string_literal();
        for (const auto& f : v.fields)
          if (f.first == key) bad("duplicate key " + json_quote(key));
        expect(':');
        v.fields.emplace_back(std::move(key), value(depth + 1));
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      v.kind = Json::Kind::array;
      ++i_;
      if (eat(']')) return v;
      do v.items.push_back(value(depth + 1));
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Json::Kind::string;
      v.text = string_literal();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Kind::number;
      const size_t start = i_;
      if (s_[i_] == '-') ++i_;
      auto digits = [&] {
        const size_t d0 = i_;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
        if (i_ == d0) bad("a number without digits");
      };
      digits();
      if (i_ < s_.size() && s_[i_] == '.') ++i_, digits();
      if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
        ++i_;
        if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
        digits();
      }
      v.text = s_.substr(start, i_ - start);
    } else if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
      v.kind = Json::Kind::boolean;
      v.text = s_[i_] == 't' ? "true" : "false";
      i_ += v.text.size();
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      bad(std::string("unexpected character '") + c + "'");
    }
    return v;
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) bad("a truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      u = u * 16 + unsigned(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : (bad("a bad \\u escape"), 0));
    }
    return u;
  }

  std::string string_literal() {
    if (i_ >= s_.size() || s_[i_] != '"') bad("expected a string");
    ++i_;
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) bad("an unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) bad("a control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) bad("an unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
            if (s_.compare(i_, 2, "\\u") != 0) bad("a lone high surrogate");
            i_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) bad("a bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            bad("a lone low surrogate");
          }
          // UTF-8 encode
          if (cp < 0x80) out += char(cp);
          else if (cp < 0x800) out += char(0xC0 | cp >> 6), out += char(0x80 | (cp & 0x3F));
          else if (cp < 0x10000)
            out += char(0xE0 | cp >> 12), out += char(0x80 | (cp >> 6 & 0x3F)), out += char(0x80 | (cp & 0x3F));
          else
            out += char(0xF0 | cp >> 18), out += char(0x80 | (cp >> 12 & 0x3F)), out += char(0x80 | (cp >> 6 & 0x3F)),
                out += char(0x80 | (cp & 0x3F));
          break;
        }
        default: bad(std::string("a bad escape '\\") + e + "'");
      }
    }
  }

  const std::string& s_;
  const std::string& file_;
  size_t i_ = 0;
};

/// Writes all of [p, p + n) to fd; false on error (errno set).
inline bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = ::write(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k;
    n -= size_t(k);
  }
  return true;
}

/// One tensor's entry in a safetensors header.
struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

/// Parses and validates the header of `path`; returns its entries (data order), metadata and data start.
inline std::vector<SafetensorsEntry> read_safetensors_header(const std::string& path, std::ifstream& in,
                                                             std::map<std::string, std::string>& metadata,
                                                             uint64_t& data_start) {
  const char* op = "load_safetensors";
  std::error_code ec;
  STRATA_CHECK(std::filesystem::is_regular_file(path, ec), op, "got path '", path, "', expected an existing file (",
               std::filesystem::exists(path, ec) ? "it is not a regular file" : "no such file", ")");
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  STRATA_CHECK(!ec, op, "got path '", path, "', expected a file whose size can be read (", ec.message(), ")");
  in.open(path, std::ios::binary);
  STRATA_CHECK(in.good(), op, "got path '", path, "', expected a readable file (", std::strerror(errno), ")");
  STRATA_CHECK(file_size >= 8, op, "got a truncated file '", path, "' of ", file_size,
               " bytes, expected at least the 8-byte header length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = n << 8 | len_bytes[k];
  STRATA_CHECK(n <= file_size - 8, op, "got a header length of ", n, " bytes in '", path, "' of ", file_size,
               " bytes, expected at most ", file_size - 8, " (a truncated or corrupt file)");
  STRATA_CHECK(n <= (uint64_t(100) << 20), op, "got a header length of ", n, " bytes in '", path,
               "', expected at most 100 MB");
  std::string header(size_t(n), '\0');
  in.read(header.data(), std::streamsize(n));
  STRATA_CHECK(in.good(), op, "got a file '", path, "' whose header could not be read, expected ", n, " bytes");
  STRATA_CHECK(n > 0 && header[0] == '{', op, "got a header in '", path,
               "' that does not start with '{', expected a JSON object");
  data_start = 8 + n;
  const uint64_t data_size = file_size - data_start;

  const Json root = JsonParser(header, path).parse_document();
  STRATA_CHECK(root.kind == Json::Kind::object, op, "got a header in '", path, "' that is not a JSON object");
  auto as_uint = [&](const Json& v, const std::string& what) {
    bool ok = v.kind == Json::Kind::number && !v.text.empty() && v.text.size() <= 19 &&
              std::all_of(v.text.begin(), v.text.end(), [](char c) { return c >= '0' && c <= '9'; });
    STRATA_CHECK(ok, op, "got ", what, " = ", v.kind == Json::Kind::number ? v.text : std::string("a non-number"),
                 " in '", path, "', expected a non-negative integer");
    return std::stoull(v.text);
  };

  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, v] : root.fields) {
    if (name == "__metadata__") {
      STRATA_CHECK(v.kind == Json::Kind::object, op, "got __metadata__ in '", path,
                   "' that is not an object, expected {\"key\": \"value\", ...}");
      for (const auto& [k, s] : v.fields) {
        STRATA_CHECK(s.kind == Json::Kind::string, op, "got __metadata__[", json_quote(k), "] in '", path,
                     "' that is not a string, expected string values only");
        metadata[k] = s.text;
      }
      continue;
    }
    const std::string where = "tensor " + json_quote(name);
    STRATA_CHECK(v.kind == Json::Kind::object, op, "got ", where, " in '", path,
                 "' that is not an object, expected {\"dtype\", \"shape\", \"data_offsets\"}");
    SafetensorsEntry e{.name = name, .dtype = DType::f32, .shape = {}};
    bool has_dtype = false, has_shape = false, has_offsets = false;
    for (const auto& [key, f] : v.fields) {
      if (key == "dtype") {
        STRATA_CHECK(f.kind == Json::Kind::string && safetensors_dtype_from(f.text, e.dtype), op, "got dtype ",
                     f.kind == Json::Kind::string ? json_quote(f.text) : std::string("(not a string)"), " for ", where,
                     " in '", path, "', expected one of F32 F64 F16 BF16 I32 I64 U8 BOOL");
        has_dtype = true;
      } else if (key == "shape") {
        STRATA_CHECK(f.kind == Json::Kind::array, op, "got a shape that is not an array for ", where, " in '", path, "'");
        for (const Json& d : f.items) {
          const uint64_t s = as_uint(d, where + " shape");
          STRATA_CHECK(s < (uint64_t(1) << 48), op, "got size ", s, " in the shape of ", where, " in '", path,
                       "', expected a size below 2^48");
          e.shape.push_back(int64_t(s));
        }
        has_shape = true;
      } else if (key == "data_offsets") {
        STRATA_CHECK(f.kind == Json::Kind::array && f.items.size() == 2, op, "got data_offsets for ", where, " in '",
                     path, "' that are not a [begin, end] pair");
        e.begin = as_uint(f.items[0], where + " data_offsets[0]");
        e.end = as_uint(f.items[1], where + " data_offsets[1]");
        has_offsets = true;
      } else {
        detail::fail(op, "got an unknown field ", json_quote(key), " for ", where, " in '", path,
                     "', expected only dtype, shape and data_offsets");
      }
    }
    STRATA_CHECK(has_dtype && has_shape && has_offsets, op, "got ", where, " in '", path, "' without ",
                 !has_dtype ? "dtype" : !has_shape ? "shape" : "data_offsets",
                 ", expected dtype, shape and data_offsets");
    // the byte count the shape needs, saturating instead of overflowing
    uint64_t bytes = uint64_t(itemsize(e.dtype));
    bool empty = false;
    for (int64_t s : e.shape) {
      empty = empty || s == 0;
      if (s != 0) bytes = bytes > UINT64_MAX / uint64_t(s) ? UINT64_MAX : bytes * uint64_t(s);
    }
    if (empty) bytes = 0;
    STRATA_CHECK(e.begin <= e.end && e.end <= data_size, op, "got data_offsets [", e.begin, ", ", e.end, "] for ",
                 where, " in '", path, "', expected begin <= end <= ", data_size, " (the data section's size)");
    STRATA_CHECK(e.end - e.begin == bytes, op, "got data_offsets [", e.begin, ", ", e.end, "] (", e.end - e.begin,
                 " bytes) for ", where, " of dtype ", safetensors_dtype_name(e.dtype), " and shape ", e.shape,
                 " in '", path, "', expected ", bytes, " bytes");
    entries.push_back(std::move(e));
  }

  // the tensors must tile the data section: no overlap, no hole, nothing after
  std::stable_sort(entries.begin(), entries.end(),
                   [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.begin < b.begin; });
  uint64_t at = 0;
  for (const SafetensorsEntry& e : entries) {
    if (e.begin == e.end) continue;  // empty tensors take no bytes, anywhere
    STRATA_CHECK(e.begin >= at, op, "got tensor ", json_quote(e.name), " at bytes [", e.begin, ", ", e.end, ") in '",
                 path, "', overlapping the tensor before it (which ends at ", at, "), expected disjoint tensors");
    STRATA_CHECK(e.begin == at, op, "got a hole in the data section of '", path, "' at bytes [", at, ", ", e.begin,
                 ") before tensor ", json_quote(e.name), ", expected tensors that cover the data section");
    at = e.end;
  }
  STRATA_CHECK(at == data_size, op, "got ", data_size - at, " bytes after the last tensor in '", path,
               "', expected the data section to end with the last tensor");
  return entries;
}

}  // namespace detail

/// What a safetensors file holds: tensors in data order, and the string metadata.
struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;
};

/// Writes `tensors` (CPU, any layout) and `metadata` to `path` atomically (temp file + rename).
inline void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  const char* op = "save_safetensors";
  // everything that can be checked is checked before a byte is written
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += (first ? "" : ",") + detail::json_quote(k) + ":" + detail::json_quote(v);
      first = false;
    }
    header += "}";
  }
  std::vector<std::string> names;
  uint64_t offset = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& [name, t] = tensors[k];
    STRATA_CHECK(name != "__metadata__", op, "got a tensor named __metadata__ (entry ", k, ") for '", path,
                 "', expected another name (the key is reserved for metadata)");
    STRATA_CHECK(std::find(names.begin(), names.end(), name) == names.end(), op, "got the name ",
                 detail::json_quote(name), " twice (entry ", k, ") for '", path, "', expected unique names");
    names.push_back(name);
    STRATA_CHECK(t.defined(), op, "got an undefined tensor ", detail::json_quote(name), " for '", path,
                 "', expected defined tensors");
    const uint64_t bytes = uint64_t(t.numel() * t.element_size());
    header += std::string(header.size() > 1 ? "," : "") + detail::json_quote(name) + ":{\"dtype\":\"" +
              detail::safetensors_dtype_name(t.dtype()) + "\",\"shape\":[";
    for (int d = 0; d < t.dim(); ++d) header += (d ? "," : "") + std::to_string(t.size(d));
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.resize((header.size() + 7) / 8 * 8, ' ');  // pad so the data section starts 8-byte aligned

  // a temporary in the same directory (rename is atomic only within one file system)
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                  std::to_string(counter++)))
              .string();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  STRATA_CHECK(fd >= 0, op, "got path '", path, "', expected a directory where a file can be written (creating '",
               tmp, "' failed: ", std::strerror(errno), ")");
  auto abandon = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    detail::fail(op, "got an error while ", what, " '", path, "' (", reason, "), expected the file to be written; ",
                 "nothing was changed");
  };

  unsigned char len_bytes[8];
  for (int k = 0; k < 8; ++k) len_bytes[k] = uint8_t(uint64_t(header.size()) >> (8 * k));
  if (!detail::write_all(fd, len_bytes, 8) || !detail::write_all(fd, header.data(), header.size()))
    abandon("writing the header of");
  for (const auto& [name, t] : tensors) {
    Tensor c;
    try {
      // a cuda tensor's bytes come over to the host first (contiguous there)
      c = !t.device().is_cpu() ? strata::detail::copy_to_device(t.detach(), kCPU)
                               : t.is_contiguous() ? t : t.detach().contiguous();
    } catch (...) {
      ::close(fd);
      ::unlink(tmp.c_str());
      throw;
    }
    if (!detail::write_all(fd, c.raw_data(), size_t(c.numel() * c.element_size()))) abandon("writing the data of");
  }
  if (::fsync(fd) != 0) abandon("flushing");
  if (::close(fd) != 0) {
    fd = -1;
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    detail::fail(op, "got an error while closing '", path, "' (", reason, "), expected the file to be written");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    detail::fail(op, "got an error renaming the finished temporary over '", path, "' (", reason,
                 "), expected a path a file can be written to; nothing was changed");
  }
}

/// Tensors (in data order) and metadata of a safetensors file, validated.
inline SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in;
  SafetensorsFile out;
  uint64_t data_start = 0;
  const auto entries = detail::read_safetensors_header(path, in, out.metadata, data_start);
  for (const auto& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) {
      in.seekg(std::streamoff(data_start + e.begin));
      in.read(static_cast<char*>(t.raw_data()), std::streamsize(e.end - e.begin));
      STRATA_CHECK(in.good(), "load_safetensors", "got a read error for tensor ", detail::json_quote(e.name),
                   " in '", path, "', expected ", e.end - e.begin, " bytes at offset ", data_start + e.begin);
    }
    if (e.dtype == DType::b8) {  // any nonzero byte is true; keep the bool bytes canonical
      auto* p = static_cast<unsigned char*>(t.raw_data());
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] != 0;
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

/// The tensors of a safetensors file, in data order.
inline std::vector<std::pair<std::string, Tensor>> load_safetensors(const std::string& path) {
  return read_safetensors(path).tensors;
}

/// Only the __metadata__ of a safetensors file (the data is not read).
inline std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  std::ifstream in;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;
  detail::read_safetensors_header(path, in, metadata, data_start);
  return metadata;
}

}  // namespace strata
