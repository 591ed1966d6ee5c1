defmodule Mix.HotpathNative.Artifact do
  @moduledoc false
  # Names, tarballs and the checksum file of the precompiled NIF artifacts, named as
  # rustler_precompiled names them, without its `lib` prefix:
  #
  #     <crate>-v<version>-nif-<nif version>-<target>.so.tar.gz        (Linux, macOS, BSD)
  #     <crate>-v<version>-nif-<nif version>-<target>.dll.tar.gz       (Windows)
  #
  # Each tarball holds one file, the library, named like the tarball without `.tar.gz`.
  # The checksum file (`checksum-<crate>.exs` at the project root, shipped in the package) is an
  # Elixir map of tarball name => "sha256:<lower-case hex>".
  #
  # Loaded by mix.exs (Code.require_file), never compiled into the :hotpath application.

  @doc "The library's name inside the tarball (the tarball's name without `.tar.gz`)."
  def lib_name(crate, version, nif_version, target) do
    ext = if windows?(target), do: "dll", else: "so"
    "#{crate}-v#{version}-nif-#{nif_version}-#{target}.#{ext}"
  end

  @doc "The tarball's file name."
  def tarball_name(crate, version, nif_version, target),
    do: lib_name(crate, version, nif_version, target) <> ".tar.gz"

  defp windows?(target), do: String.contains?(target, "windows")

  @doc "`\"sha256:<hex>\"` of a binary."
  def checksum(binary),
    do: "sha256:" <> Base.encode16(:crypto.hash(:sha256, binary), case: :lower)

  @doc """
  Reads a checksum file: `{:ok, map}`; a missing file is an empty map. Anything but a map of
  strings to `"sha256:<64 hex digits>"` is `{:error, message}`. The file is data: it is
  parsed with `Code.string_to_quoted/1`, never evaluated.
  """
  def read_checksums(path) do
    with {:ok, text} <- read_or_empty(path),
         {:ok, quoted} <- quoted(text, path),
         {:ok, map} <- literal_map(quoted, path) do
      {:ok, map}
    end
  end

  defp read_or_empty(path) do
    case File.read(path) do
      {:ok, text} -> {:ok, text}
      {:error, :enoent} -> {:ok, "%{}"}
      {:error, reason} -> {:error, "cannot read #{path}: #{:file.format_error(reason)}"}
    end
  end

  defp quoted(text, path) do
    case Code.string_to_quoted(text) do
      {:ok, quoted} -> {:ok, quoted}
      {:error, _} -> {:error, "#{path} is not an Elixir map"}
    end
  end

  defp literal_map({:%{}, _, pairs}, path) do
    Enum.reduce_while(pairs, {:ok, %{}}, fn
      {name, "sha256:" <> hex = sum}, {:ok, acc} when is_binary(name) and byte_size(hex) == 64 ->
        if hex =~ ~r/\A[0-9a-f]+\z/,
          do: {:cont, {:ok, Map.put(acc, name, sum)}},
          else: {:halt, {:error, "#{path}: #{inspect(sum)} is not a lower-case SHA-256"}}

      pair, _acc ->
        {:halt, {:error, "#{path}: unexpected entry #{Macro.to_string(pair)}"}}
    end)
  end

  defp literal_map(_quoted, path), do: {:error, "#{path} is not an Elixir map"}

  @doc "The checksum file's text for a map of tarball name => sum (sorted, one per line)."
  def format_checksums(map) when map_size(map) == 0, do: "%{}\n"

  def format_checksums(map) do
    lines = for {name, sum} <- Enum.sort(map), do: "  #{inspect(name)} => #{inspect(sum)},\n"
    IO.iodata_to_binary(["%{\n", lines, "}\n"])
  end

  @doc "Adds or replaces entries of the checksum file at `path`."
  def put_checksums!(path, entries) do
    existing =
      case read_checksums(path) do
        {:ok, map} -> map
        {:error, message} -> Mix.raise(message)
      end

    File.write!(path, format_checksums(Map.merge(existing, Map.new(entries))))
  end

  @doc "A gzipped tarball (binary) holding `library` (a binary) as `lib_name`."
  def tarball!(lib_name, library) do
    tmp = Path.join(System.tmp_dir!(), "hotpath_nif_#{System.unique_integer([:positive])}.tar.gz")

    try do
      :ok =
        :erl_tar.create(String.to_charlist(tmp), [{String.to_charlist(lib_name), library}], [
          :compressed
        ])

      File.read!(tmp)
    after
      File.rm(tmp)
    end
  end

  @doc "The library inside a tarball (a binary): `{:ok, library}` or `{:error, message}`."
  def extract(tarball) do
    case :erl_tar.extract({:binary, tarball}, [:compressed, :memory]) do
      {:ok, [{_name, library}]} -> {:ok, library}
      {:ok, files} -> {:error, "expected one file in the tarball, found #{length(files)}"}
      {:error, reason} -> {:error, "not a gzipped tarball: #{inspect(reason)}"}
    end
  end
end
