defmodule Mix.HotpathNative.Cargo do
  @moduledoc false
  # The source build: finds cargo (Rust 1.91+, rustler 0.39's MSRV), runs `cargo build` with
  # `--message-format=json-render-diagnostics` and takes the library's path from cargo's
  # `compiler-artifact` message, so `CARGO_BUILD_TARGET` or a `[build] target` in a parent
  # `.cargo/config.toml` (which move it to `target/<triple>/<profile>/`) need no guessing.
  # The messages are read with Mix.HotpathNative.JSON (Elixir 1.14 has no JSON module).
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
             Mix.HotpathNative.JSON.decode(line),
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
end
