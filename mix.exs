defmodule Mix.Tasks.Compile.HotpathCargo do
  @moduledoc """
  Builds Hotpath's native library with cargo and installs it into the app's build path.

  Runs `cargo build --release --locked` in `native/hotpath_nif` with an explicit target
  directory, then copies the library to `priv/native/hotpath_nif.so` under the app's build
  path (a macOS `.dylib` is renamed: `:erlang.load_nif/2` appends `.so` on Unix). When no
  native source changed since the last install it does nothing.

  Environment:

    * `HOTPATH_NIF_PATH` - install this prebuilt library instead of building
    * `HOTPATH_CARGO` - the cargo executable (default: `cargo` on `PATH`)
    * `HOTPATH_CARGO_TARGET_DIR` - cargo's target directory (default: `target/` beside `mix.exs`)
    * `HOTPATH_CARGO_PROFILE` - `release` (default) or `debug`
  """
  use Mix.Task.Compiler

  @crate "hotpath_nif"
  # rustler 0.39 needs Rust 1.91 (its MSRV).
  @min_cargo {1, 91}

  @impl true
  def run(_args) do
    project_dir = File.cwd!()
    installed = installed_path()

    case System.get_env("HOTPATH_NIF_PATH") do
      prebuilt when prebuilt in [nil, ""] -> build(project_dir, installed)
      prebuilt -> install_prebuilt(prebuilt, installed)
    end
  end

  @impl true
  def clean do
    File.rm(installed_path())
    File.rm(manifest())
    :ok
  end

  @impl true
  def manifests, do: [manifest()]

  defp manifest, do: Path.join(Mix.Project.manifest_path(), "compile.hotpath_cargo")

  defp installed_path, do: Path.join([Mix.Project.app_path(), "priv", "native", @crate <> ".so"])

  defp build(project_dir, installed) do
    profile = profile()
    sources = native_sources(project_dir)

    if File.exists?(installed) and manifest_profile() == profile and
         not Mix.Utils.stale?(sources, [installed]) do
      {:noop, []}
    else
      cargo = cargo!()
      crate_dir = Path.join([project_dir, "native", @crate])
      target_dir = target_dir(project_dir)

      args =
        ["build", "--locked", "--target-dir", target_dir] ++
          if(profile == "release", do: ["--release"], else: [])

      Mix.shell().info("Compiling #{@crate} (cargo #{Enum.join(args, " ")})")

      case System.cmd(cargo, args,
             cd: crate_dir,
             stderr_to_stdout: true,
             into: IO.stream(:stdio, :line)
           ) do
        {_, 0} ->
          artifact = Path.join([target_dir, profile, artifact_name()])
          copy!(artifact, installed)
          write_manifest(profile)
          {:ok, []}

        {_, status} ->
          Mix.raise(
            "cargo build of #{@crate} failed (exit status #{status}); see its output above"
          )
      end
    end
  end

  defp install_prebuilt(prebuilt, installed) do
    unless File.regular?(prebuilt) do
      Mix.raise("HOTPATH_NIF_PATH is set to #{inspect(prebuilt)}, which is not a file")
    end

    if File.exists?(installed) and not Mix.Utils.stale?([prebuilt], [installed]) do
      {:noop, []}
    else
      Mix.shell().info("Installing prebuilt #{@crate} from #{prebuilt} (HOTPATH_NIF_PATH)")
      copy!(prebuilt, installed)
      write_manifest("prebuilt")
      {:ok, []}
    end
  end

  defp copy!(from, to) do
    File.mkdir_p!(Path.dirname(to))
    # Remove first: overwriting a library a running VM has mapped can crash that VM.
    File.rm(to)
    File.cp!(from, to)
  end

  defp write_manifest(contents) do
    File.mkdir_p!(Path.dirname(manifest()))
    File.write!(manifest(), contents)
  end

  defp native_sources(project_dir) do
    Path.wildcard(Path.join(project_dir, "native/*/{Cargo.toml,build.rs}")) ++
      Path.wildcard(Path.join(project_dir, "native/*/src/**/*.rs")) ++
      Enum.filter(
        [Path.join(project_dir, "Cargo.toml"), Path.join(project_dir, "Cargo.lock")],
        &File.exists?/1
      )
  end

  defp manifest_profile do
    case File.read(manifest()) do
      {:ok, profile} -> profile
      {:error, _} -> nil
    end
  end

  defp profile do
    case System.get_env("HOTPATH_CARGO_PROFILE", "release") do
      profile when profile in ["release", "debug"] ->
        profile

      other ->
        Mix.raise("HOTPATH_CARGO_PROFILE must be release or debug, got: #{inspect(other)}")
    end
  end

  defp target_dir(project_dir) do
    case System.get_env("HOTPATH_CARGO_TARGET_DIR") do
      dir when dir in [nil, ""] -> Path.join(project_dir, "target")
      dir -> Path.expand(dir)
    end
  end

  defp artifact_name do
    case :os.type() do
      {:win32, _} -> @crate <> ".dll"
      {:unix, :darwin} -> "lib" <> @crate <> ".dylib"
      {:unix, _} -> "lib" <> @crate <> ".so"
    end
  end

  defp cargo! do
    cargo =
      case System.get_env("HOTPATH_CARGO") do
        nil -> System.find_executable("cargo")
        path -> System.find_executable(path)
      end

    needed = "Rust #{elem(@min_cargo, 0)}.#{elem(@min_cargo, 1)} or newer"

    unless cargo do
      Mix.raise(
        "Hotpath needs cargo to build its native library, and none was found on PATH. " <>
          "Install #{needed} (https://rustup.rs), or set HOTPATH_NIF_PATH to a prebuilt " <>
          "hotpath_nif library."
      )
    end

    case System.cmd(cargo, ["--version"], stderr_to_stdout: true) do
      {"cargo " <> version, 0} ->
        case Regex.run(~r/^(\d+)\.(\d+)/, version) do
          [_, major, minor] ->
            if {String.to_integer(major), String.to_integer(minor)} < @min_cargo do
              Mix.raise(
                "Hotpath needs #{needed} to build its native library; #{cargo} is " <>
                  "cargo #{String.trim(version)}. Update it with `rustup update stable`."
              )
            end

          nil ->
            Mix.raise("could not read the version of #{cargo}: #{inspect(version)}")
        end

        cargo

      {output, _} ->
        Mix.raise("#{cargo} --version failed: #{String.trim(output)}. Hotpath needs #{needed}.")
    end
  end
end

defmodule Hotpath.MixProject do
  use Mix.Project

  @version "0.1.0"
  @source_url "https://github.com/hotpath-ex/hotpath"

  def project do
    [
      app: :hotpath,
      version: @version,
      elixir: "~> 1.14",
      compilers: [:hotpath_cargo] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: [],
      # test/fixtures holds Mix projects (package_check's consumer and Plug stand-in), not tests.
      test_ignore_filters: [&String.starts_with?(&1, "test/fixtures/")],
      package: package(),
      description:
        "Rust-powered hot paths for Phoenix and OTP: a native concurrent rate limiter, " <>
          "telemetry histograms and dirty-scheduler CPU work.",
      source_url: @source_url,
      docs: [main: "Hotpath", extras: ["README.md", "CHANGELOG.md"]]
    ] ++ run_time_only([Plug.Conn, :telemetry])
  end

  # Optional integrations are the host application's dependencies, not Hotpath's: the adapters
  # call them only at run time. Without an exclusion, Elixir 1.14 warns on every compile that
  # Hotpath uses an application it does not depend on. Up to 1.19 the warning obeys only
  # `xref: [exclude: ...]`; 1.20 deprecates that for `elixirc_options: [no_warn_undefined: ...]`.
  defp run_time_only(modules) do
    if Version.match?(System.version(), ">= 1.20.0-dev"),
      do: [elixirc_options: [no_warn_undefined: modules]],
      else: [xref: [exclude: modules]]
  end

  def application do
    [extra_applications: [:logger, :crypto] ++ demo_applications(Mix.env())]
  end

  # The demo (`mix hotpath.demo`, under demo/) is compiled in dev and test only: it is not
  # part of the package. It serves HTTP with :inets httpd and drives load with :httpc, which
  # calls :public_key (Mix 1.15+ prunes every OTP application a project does not list).
  defp elixirc_paths(:test), do: ["lib", "demo", "test/support"]
  defp elixirc_paths(:dev), do: ["lib", "demo"]
  defp elixirc_paths(_), do: ["lib"]

  defp demo_applications(env) when env in [:dev, :test], do: [:inets, :public_key]
  defp demo_applications(_env), do: []

  # Exactly what a user needs to build the library. `scripts/package_check` builds a consumer
  # app against a copy of precisely these files.
  defp package do
    [
      name: "hotpath",
      licenses: ["MIT"],
      links: %{"GitHub" => @source_url, "Changelog" => @source_url <> "/blob/main/CHANGELOG.md"},
      files: ~w(
        lib
        native/hotpath_core/Cargo.toml
        native/hotpath_core/src
        native/hotpath_nif/Cargo.toml
        native/hotpath_nif/src
        Cargo.toml
        Cargo.lock
        mix.exs
        .formatter.exs
        README.md
        LICENSE
        CHANGELOG.md
      )
    ]
  end
end
