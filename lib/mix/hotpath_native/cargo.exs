defmodule Mix.HotpathNative.Cargo do
  @moduledoc false
  # The source build: finds cargo (Rust 1.91+, rustler 0.39's MSRV), runs `cargo build` with
  # `--message-format=json-render-diagnostics` and takes the library's path from cargo's
  # `compiler-artifact` message, so `CARGO_BUILD_TARGET` or a `[build] target` in a parent
  # `.cargo/config.toml` (which move it to `target/<triple>/<profile>/`) need no guessing.
  # Elixir 1.14 has no JSON module: `decode_json/1` below is a small, strict decoder.
  #
  # Loaded by mix.exs (Code.require_file), never compiled into the :hotpath application.

  @min_cargo {1, 91}

  @doc "Rust >= 1.91, as text for messages."
  def needed, do: "Rust #{elem(@min_cargo, 0)}.#{elem(@min_cargo, 1)} or newer"

  @doc "The cargo executable (`HOTPATH_CARGO` or cargo on PATH), or nil."
  def find do
    case System.get_env("HOTPATH_CARGO") do
      nil -> System.find_executable("cargo")
      path -> System.find_executable(path)
    end
  end

  @doc "Checks the version of `cargo`; raises when it is too old or does not answer."
  def check_version!(cargo) do
    case System.cmd(cargo, ["--version"], stderr_to_stdout: true) do
      {"cargo " <> version, 0} ->
        case Regex.run(~r/^(\d+)\.(\d+)/, version) do
          [_, major, minor] ->
            if {String.to_integer(major), String.to_integer(minor)} < @min_cargo do
              Mix.raise(
                "Hotpath needs #{needed()} to build its native library; #{cargo} is " <>
                  "cargo #{String.trim(version)}. Update it with `rustup update stable`."
              )
            end

          nil ->
            Mix.raise("could not read the version of #{cargo}: #{inspect(version)}")
        end

        cargo

      {output, _} ->
        Mix.raise("#{cargo} --version failed: #{String.trim(output)}. Hotpath needs #{needed()}.")
    end
  end

  @doc """
  Builds `crate` in `crate_dir` and returns the path of its cdylib. `opts`: `:target_dir`,
  `:profile` (`"release"` or `"debug"`), `:target` (a triple, or nil for the host),
  `:features` (cargo features of the crate, default none).
  Cargo's progress and diagnostics go to stderr; its JSON messages are read from stdout.
  """
  def build!(cargo, crate, crate_dir, opts) do
    args =
      ["build", "--locked", "--message-format=json-render-diagnostics"] ++
        ["--target-dir", Keyword.fetch!(opts, :target_dir)] ++
        if(opts[:profile] == "debug", do: [], else: ["--release"]) ++
        if(opts[:target], do: ["--target", opts[:target]], else: []) ++
        features_args(opts[:features] || [])

    Mix.shell().info("Compiling #{crate} (cargo #{Enum.join(args, " ")})")

    case System.cmd(cargo, args, cd: crate_dir) do
      {stdout, 0} ->
        case artifact_path(stdout, crate) do
          {:ok, path} ->
            path

          :error ->
            Mix.raise("cargo built #{crate} but reported no cdylib for it in its JSON messages")
        end

      {_, status} ->
        Mix.raise("cargo build of #{crate} failed (exit status #{status}); see its output above")
    end
  end

  defp features_args([]), do: []
  defp features_args(features), do: ["--features", Enum.join(features, ",")]

  @doc """
  The library file of `crate`'s cdylib from cargo's JSON messages (one per line; other lines
  are ignored): the last `compiler-artifact` whose target is named `crate` and of kind
  `cdylib`, its file ending in `.so`, `.dylib` or `.dll`. `{:ok, path}` or `:error`.
  """
  def artifact_path(messages, crate) do
    messages
    |> String.split(["\r\n", "\n"], trim: true)
    |> Enum.flat_map(fn line ->
      with "{" <> _ <- String.trim_leading(line),
           {:ok, %{"reason" => "compiler-artifact", "target" => target, "filenames" => files}} <-
             decode_json(line),
           %{"name" => ^crate, "kind" => kinds} when is_list(kinds) <- target,
           true <- "cdylib" in kinds,
           [file | _] <- Enum.filter(files, &String.ends_with?(&1, [".so", ".dylib", ".dll"])) do
        [file]
      else
        _ -> []
      end
    end)
    |> List.last()
    |> case do
      nil -> :error
      path -> {:ok, path}
    end
  end

  @doc "Decodes one JSON text: `{:ok, term}` (objects as maps with string keys) or `:error`."
  def decode_json(text) do
    {value, rest} = value(skip(text))
    if skip(rest) == "", do: {:ok, value}, else: :error
  catch
    :error -> :error
  end

  defp value("{" <> rest), do: members(skip(rest), %{})
  defp value("[" <> rest), do: elements(skip(rest), [])
  defp value("\"" <> rest), do: string(rest, [])
  defp value("true" <> rest), do: {true, rest}
  defp value("false" <> rest), do: {false, rest}
  defp value("null" <> rest), do: {nil, rest}
  defp value(text), do: number(text)

  defp members("}" <> rest, acc) when acc == %{}, do: {acc, rest}

  defp members("\"" <> rest, acc) do
    {key, rest} = string(rest, [])
    {value, rest} = value(skip(colon(skip(rest))))
    acc = Map.put(acc, key, value)

    case skip(rest) do
      "," <> rest -> members(skip(rest), acc)
      "}" <> rest -> {acc, rest}
      _ -> throw(:error)
    end
  end

  defp members(_, _), do: throw(:error)

  defp elements("]" <> rest, []), do: {[], rest}

  defp elements(text, acc) do
    {value, rest} = value(text)

    case skip(rest) do
      "," <> rest -> elements(skip(rest), [value | acc])
      "]" <> rest -> {Enum.reverse([value | acc]), rest}
      _ -> throw(:error)
    end
  end

  defp string("\"" <> rest, acc), do: {IO.iodata_to_binary(Enum.reverse(acc)), rest}
  defp string("\\u" <> <<hex::binary-4, rest::binary>>, acc), do: unicode(hex, rest, acc)
  defp string("\\" <> <<c, rest::binary>>, acc), do: string(rest, [escape(c) | acc])
  defp string(<<c, rest::binary>>, acc) when c >= 0x20, do: string(rest, [c | acc])
  defp string(_, _), do: throw(:error)

  defp escape(?"), do: ?"
  defp escape(?\\), do: ?\\
  defp escape(?/), do: ?/
  defp escape(?b), do: ?\b
  defp escape(?f), do: ?\f
  defp escape(?n), do: ?\n
  defp escape(?r), do: ?\r
  defp escape(?t), do: ?\t
  defp escape(_), do: throw(:error)

  # \uXXXX, with UTF-16 surrogate pairs for characters beyond the BMP.
  defp unicode(hex, rest, acc) do
    case {hex4(hex), rest} do
      {high, "\\u" <> <<low::binary-4, rest::binary>>} when high in 0xD800..0xDBFF ->
        low = hex4(low)
        if low not in 0xDC00..0xDFFF, do: throw(:error)
        code = 0x10000 + Bitwise.bsl(high - 0xD800, 10) + (low - 0xDC00)
        string(rest, [<<code::utf8>> | acc])

      {code, _} when code in 0xD800..0xDFFF ->
        throw(:error)

      {code, rest} ->
        string(rest, [<<code::utf8>> | acc])
    end
  end

  defp hex4(hex) do
    case Integer.parse(hex, 16) do
      {code, ""} -> code
      _ -> throw(:error)
    end
  end

  defp number(text) do
    case Regex.run(~r/\A-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/, text) do
      [literal | parts] ->
        rest = binary_part(text, byte_size(literal), byte_size(text) - byte_size(literal))

        if Enum.any?(Enum.drop(parts, 1), &(&1 != "")),
          do: {float(literal), rest},
          else: {String.to_integer(literal), rest}

      nil ->
        throw(:error)
    end
  end

  # "1e5" has no fraction, which Float.parse accepts but String.to_float does not.
  defp float(literal), do: literal |> Float.parse() |> elem(0)

  defp colon(":" <> rest), do: rest
  defp colon(_), do: throw(:error)

  defp skip(<<c, rest::binary>>) when c in [?\s, ?\t, ?\n, ?\r], do: skip(rest)
  defp skip(text), do: text
end
