// Data sources: listing files (get_files, get_image_files), labelling them by their folders
// (parent_label, grandparent_name), the CIFAR-10 binary format and CSV tables.
//
// get_files follows fastai's get_files: every file under `dir` whose extension (case-insensitive,
// ".jpg") is in `extensions` (all files when empty), recursing into subfolders when `recurse`,
// skipping names that start with '.', following symlinked folders (each real folder once). `folders`
// keeps only those top-level subfolders of `dir` (a missing one is an error: a typo would otherwise
// give an empty dataset). The result is sorted, so it is the same on every machine and run.
//
// CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"): each file is records of
// 1 label byte (0..9) + 3072 pixel bytes (1024 R, 1024 G, 1024 B, each 32x32 row-major), that is
// exactly one u8 [3, 32, 32] image in PyTorch's layout. Train = data_batch_1..5.bin (50000 images),
// test = test_batch.bin (10000). cifar10_train/test accept the folder holding the .bin files or the
// folder the tarball was unpacked in (with cifar-10-batches-bin/ inside).
//
// read_csv: RFC 4180 -- fields split on the delimiter, "quoted" fields may hold the delimiter, line
// breaks and doubled "" quotes; CRLF or LF line ends; a UTF-8 BOM is dropped; empty lines are skipped.
// Every row must have as many fields as the header (or the first row); errors name file:line.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/error.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata {

namespace detail {

inline std::string ascii_lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string joined(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

/// Appends the files of `dir` matching `exts` (lower case, with the dot; empty = all) to `out`.
inline void collect_files(const std::filesystem::path& dir, const std::set<std::string>& exts, bool recurse,
                          std::set<std::filesystem::path>& seen_dirs, std::vector<std::filesystem::path>& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path real = fs::canonical(dir, ec);
  if (ec || !seen_dirs.insert(real).second) return;  // unreadable, or a symlink loop / a folder seen already
  for (fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end; !ec && it != end;
       it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (it->is_directory(ec)) {
      if (recurse) collect_files(p, exts, recurse, seen_dirs, out);
    } else if (it->is_regular_file(ec)) {
      if (exts.empty() || exts.count(ascii_lower(p.extension().string()))) out.push_back(p);
    }
  }
}

}  // namespace detail

/// Files under `dir` with one of `extensions` (".jpg", case-insensitive; empty = all), sorted;
/// `recurse` into subfolders; `folders` = only these top-level subfolders.
inline std::vector<std::filesystem::path> get_files(const std::filesystem::path& dir,
                                                    std::vector<std::string> extensions = {}, bool recurse = true,
                                                    std::vector<std::string> folders = {}) {
  namespace fs = std::filesystem;
  const char* op = "get_files";
  std::error_code ec;
  STRATA_CHECK(fs::is_directory(dir, ec), op, "got '", dir.string(), "', expected an existing directory (",
               fs::exists(dir, ec) ? "it is not a directory" : "no such directory", ")");
  std::set<std::string> exts;
  for (std::string e : extensions) {
    STRATA_CHECK(!e.empty(), op, "got an empty extension, expected extensions like \".jpg\"");
    exts.insert(detail::ascii_lower(e[0] == '.' ? e : "." + e));
  }
  std::vector<fs::path> out;
  std::set<fs::path> seen_dirs;
  if (folders.empty()) {
    detail::collect_files(dir, exts, recurse, seen_dirs, out);
  } else {
    for (const std::string& f : folders) {
      if (fs::is_directory(dir / f, ec)) continue;
      std::vector<std::string> have;
      for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_directory(ec)) have.push_back(e.path().filename().string());
      std::sort(have.begin(), have.end());
      detail::fail(op, "got folder '", f, "' which is not a subfolder of '", dir.string(), "', expected one of: ",
                   detail::joined(have));
    }
    for (const std::string& f : folders) detail::collect_files(dir / f, exts, recurse, seen_dirs, out);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// The extensions get_image_files looks for: the formats read_image decodes.
inline const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".bmp", ".gif", ".hdr", ".jpe", ".jpeg", ".jpg", ".pgm",
                                                ".pic", ".png", ".pnm", ".ppm", ".psd"};
  return exts;
}

/// Image files under `dir` (the extensions read_image decodes), sorted.
inline std::vector<std::filesystem::path> get_image_files(const std::filesystem::path& dir, bool recurse = true,
                                                          std::vector<std::string> folders = {}) {
  return get_files(dir, image_extensions(), recurse, std::move(folders));
}

/// The name of the folder holding `path` (fastai's parent_label): "train/cat/1.jpg" -> "cat".
inline std::string parent_label(const std::filesystem::path& path) { return path.parent_path().filename().string(); }

/// The name of the folder two levels up: "train/cat/1.jpg" -> "train" (a train/valid split by folder).
inline std::string grandparent_name(const std::filesystem::path& path) {
  return path.parent_path().parent_path().filename().string();
}

// ---------------------------------------------------------------------------------------------------
// CIFAR-10

/// CIFAR-10 images u8 [N, 3, 32, 32] and labels i64 [N] (0..9, see cifar10_classes()).
struct CifarData {
  Tensor images;
  Tensor labels;
};

/// The 10 class names, in label order.
inline const std::vector<std::string>& cifar10_classes() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

/// The records of CIFAR-10 .bin files, concatenated in order; max_items >= 0 keeps the first ones.
inline CifarData read_cifar10(const std::vector<std::string>& files, int64_t max_items = -1) {
  namespace fs = std::filesystem;
  const char* op = "read_cifar10";
  constexpr int64_t kPixels = 3 * 32 * 32, kRecord = 1 + kPixels;
  STRATA_CHECK(!files.empty(), op, "got no files, expected CIFAR-10 .bin files");
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (const std::string& f : files) {
    std::error_code ec;
    STRATA_CHECK(fs::is_regular_file(f, ec), op, "got '", f, "', expected an existing file (",
                 fs::is_directory(f, ec) ? "it is a directory: use cifar10_train(dir) / cifar10_test(dir)"
                 : fs::exists(f, ec)     ? "it is not a regular file"
                                         : "no such file",
                 ")");
    const auto size = int64_t(fs::file_size(f, ec));
    STRATA_CHECK(!ec && size > 0 && size % kRecord == 0, op, "'", f, "' has ", size, " bytes, expected a positive ",
                 "multiple of ", kRecord, " (records of 1 label byte + 3072 pixel bytes; a whole batch file is ",
                 10000 * kRecord, ")");
    counts.push_back(size / kRecord);
    total += size / kRecord;
  }
  const int64_t n = max_items >= 0 ? std::min(max_items, total) : total;
  CifarData out{Tensor::empty({n, 3, 32, 32}, DType::u8), Tensor::empty({n}, DType::i64)};
  uint8_t* img = out.images.data_ptr<uint8_t>();
  int64_t* lab = out.labels.data_ptr<int64_t>();
  std::vector<uint8_t> rec(static_cast<size_t>(kRecord));
  int64_t done = 0;
  for (size_t k = 0; k < files.size() && done < n; ++k) {
    std::FILE* fp = std::fopen(files[k].c_str(), "rb");
    STRATA_CHECK(fp != nullptr, op, "cannot open '", files[k], "', expected a readable file");
    for (int64_t r = 0; r < counts[k] && done < n; ++r, ++done) {
      if (std::fread(rec.data(), 1, rec.size(), fp) != rec.size()) {
        std::fclose(fp);
        detail::fail(op, "'", files[k], "': short read at record ", r, ", expected ", counts[k], " records");
      }
      if (rec[0] >= 10) {
        std::fclose(fp);
        detail::fail(op, "'", files[k], "': record ", r, " (byte offset ", r * kRecord, ") has label ", int(rec[0]),
                     ", expected 0..9 (is this CIFAR-100 or not a CIFAR-10 file?)");
      }
      lab[done] = rec[0];
      std::copy(rec.begin() + 1, rec.end(), img + done * kPixels);
    }
    std::fclose(fp);
  }
  return out;
}

/// The records of one CIFAR-10 .bin file.
inline CifarData read_cifar10(const std::string& file, int64_t max_items = -1) {
  return read_cifar10(std::vector<std::string>{file}, max_items);
}

namespace detail {

/// `names` inside `dir`, or inside dir/cifar-10-batches-bin (the unpacked tarball); Error otherwise.
inline std::vector<std::string> cifar10_files(const std::filesystem::path& dir, const std::vector<std::string>& names,
                                              const char* op) {
  namespace fs = std::filesystem;
  std::error_code ec;
  STRATA_CHECK(fs::is_directory(dir, ec), op, "got '", dir.string(), "', expected a directory holding ",
               detail::joined(names));
  fs::path base = dir;
  if (!fs::exists(dir / names[0], ec) && fs::exists(dir / "cifar-10-batches-bin" / names[0], ec))
    base = dir / "cifar-10-batches-bin";
  std::vector<std::string> files;
  for (const std::string& n : names) {
    STRATA_CHECK(fs::exists(base / n, ec), op, "got directory '", dir.string(), "' without '", n,
                 "', expected the CIFAR-10 binary files ", detail::joined(names),
                 " (in it or in its cifar-10-batches-bin/)");
    files.push_back((base / n).string());
  }
  return files;
}

}  // namespace detail

/// The 50000 training images: data_batch_1..5.bin in `dir` (or in dir/cifar-10-batches-bin).
inline CifarData cifar10_train(const std::filesystem::path& dir, int64_t max_items = -1) {
  return read_cifar10(detail::cifar10_files(dir,
                                            {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                             "data_batch_4.bin", "data_batch_5.bin"},
                                            "cifar10_train"),
                      max_items);
}

/// The 10000 test images: test_batch.bin in `dir` (or in dir/cifar-10-batches-bin).
inline CifarData cifar10_test(const std::filesystem::path& dir, int64_t max_items = -1) {
  return read_cifar10(detail::cifar10_files(dir, {"test_batch.bin"}, "cifar10_test"), max_items);
}

// ---------------------------------------------------------------------------------------------------
// CSV

struct CsvOptions {
  char delimiter = ',';
  bool header = true;  // the first row names the columns
};

/// A CSV file as strings: the header (empty without one) and the rows, all of the same width.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  /// The index of column `name`; Error listing the columns when there is none.
  int64_t col(const std::string& name) const {
    const auto it = std::find(header.begin(), header.end(), name);
    STRATA_CHECK(it != header.end(), "CsvTable::col", "got column '", name, "', expected one of: ",
                 header.empty() ? std::string("(no header: read with .header = true)") : detail::joined(header));
    return int64_t(it - header.begin());
  }
};

/// Parses CSV text; `what` (the file name) names errors as what:line.
inline CsvTable parse_csv(std::string_view text, const std::string& what, CsvOptions opts = {}) {
  const char* op = "read_csv";
  const char d = opts.delimiter;
  STRATA_CHECK(d != '"' && d != '\n' && d != '\r', op, "got delimiter '", d, "' for '", what,
               "', expected a character other than a quote or a line break");
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> row_line;  // the line each row starts on
  std::vector<std::string> row;
  std::string field;
  int64_t line = 1, start_line = 1;
  size_t i = 0;
  const size_t n = text.size();
  auto end_row = [&] {
    row.push_back(std::move(field));
    field.clear();
    if (!(row.size() == 1 && row[0].empty())) {  // skip empty lines
      rows.push_back(std::move(row));
      row_line.push_back(start_line);
    }
    row.clear();
  };
  while (i < n) {
    // one field, starting at i
    if (text[i] == '"') {
      const int64_t quote_line = line;
      ++i;
      for (;;) {
        STRATA_CHECK(i < n, op, "'", what, ":", quote_line, "': a quoted field is never closed, expected a closing \"");
        if (text[i] == '"') {
          if (i + 1 < n && text[i + 1] == '"') { field += '"'; i += 2; continue; }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field += text[i++];
      }
      const bool at_end = i >= n || text[i] == d || text[i] == '\n' || (text[i] == '\r' && (i + 1 >= n || text[i + 1] == '\n'));
      STRATA_CHECK(at_end, op, "'", what, ":", line, "': got '", text[i], "' after a closing quote, expected '", d,
                   "' or the end of the line");
    } else {
      while (i < n && text[i] != d && text[i] != '\n' && !(text[i] == '\r' && (i + 1 >= n || text[i + 1] == '\n')))
        field += text[i++];
    }
    // what ends it
    if (i >= n) {
      end_row();
      break;
    }
    if (text[i] == d) {
      row.push_back(std::move(field));
      field.clear();
      ++i;
      if (i >= n) {  // a trailing delimiter: one more, empty field
        end_row();
        break;
      }
      continue;
    }
    i += text[i] == '\r' ? 2 : 1;  // CRLF or LF (a lone CR at the end of the text too)
    end_row();
    start_line = ++line;
  }
  CsvTable t;
  size_t first = 0;
  if (opts.header && !rows.empty()) {
    t.header = std::move(rows[0]);
    first = 1;
  }
  const size_t width = opts.header ? t.header.size() : rows.empty() ? 0 : rows[0].size();
  for (size_t r = first; r < rows.size(); ++r) {
    STRATA_CHECK(rows[r].size() == width, op, "'", what, ":", row_line[r], "': got ", rows[r].size(),
                 " fields, expected ", width, opts.header ? " (as in the header)" : " (as in the first row)");
    t.rows.push_back(std::move(rows[r]));
  }
  return t;
}

/// Reads a CSV file (RFC 4180 quotes, CRLF or LF); every row as wide as the header; errors name file:line.
inline CsvTable read_csv(const std::string& path, CsvOptions opts = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  STRATA_CHECK(fs::is_regular_file(path, ec), "read_csv", "got '", path, "', expected an existing file (",
               fs::is_directory(path, ec) ? "it is a directory" : fs::exists(path, ec) ? "not a regular file" : "no such file",
               ")");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  STRATA_CHECK(f != nullptr, "read_csv", "cannot open '", path, "', expected a readable file");
  std::string text;
  char buf[1 << 16];
  for (size_t got; (got = std::fread(buf, 1, sizeof(buf), f)) > 0;) text.append(buf, got);
  std::fclose(f);
  return parse_csv(text, path, opts);
}

}  // namespace strata
