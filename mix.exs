# The build logic lives in lib/mix/hotpath_native/*.exs (shipped in the package, never compiled
# into the :hotpath application): target detection, the checksum file and tarballs, download
# and cache, cargo (whose JSON messages json.exs reads). The compiler below decides between
# them and installs the library.
for file <- ~w(json target artifact fetch cargo package_task) do
  Code.require_file("lib/mix/hotpath_native/#{file}.exs", __DIR__)
end

defmodule Mix.Tasks.Compile.HotpathCargo do
  @moduledoc """
  Gets Hotpath's native library and installs it into the app's build path as
  `priv/native/hotpath_nif.so` (`:erlang.load_nif/2` appends `.so` on Unix).

  In order:

    1. `HOTPATH_NIF_PATH` set: installs that prebuilt library.
    2. A source build (cargo, Rust 1.91+) when `HOTPATH_BUILD=1`, or
       `config :hotpath, build_from_source: true`, or Hotpath is the top-level Mix project
       (its own checkout: `mix` runs in Hotpath's directory, not in an app that depends on it).
    3. Otherwise (Hotpath is a dependency) the precompiled artifact, when
       `checksum-hotpath_nif.exs` lists one for this version, NIF version and target:
       from the cache, else downloaded from the base URL; its SHA-256 is checked before it is
       cached or installed. No artifact listed, or none downloadable: the source build when
       cargo is there, else an error naming the target and the ways out.

  The source build runs `cargo build --release --locked --message-format=json-render-diagnostics`
  in `native/hotpath_nif` and takes the library's path from cargo's messages. It does nothing
  when no native source changed since the last install.

  Environment:

    * `HOTPATH_NIF_PATH` - install this prebuilt library
    * `HOTPATH_BUILD` - `1` or `true`: always build from source
    * `HOTPATH_NIF_BASE_URL` - where to download artifacts (a mirror); default: this
      version's GitHub release
    * `HOTPATH_CACHE_DIR` - the download cache (default: `nif/` in
      `:filename.basedir(:user_cache, "hotpath")`)
    * `HOTPATH_CARGO` - the cargo executable (default: `cargo` on `PATH`)
    * `HOTPATH_CARGO_TARGET_DIR` - cargo's target directory (default: `target/` beside `mix.exs`)
    * `HOTPATH_CARGO_PROFILE` - `release` (default) or `debug`
    * `HOTPATH_CARGO_FEATURES` - cargo features of the crate, comma-separated (default: `bench`
      for Hotpath's own MIX_ENV=test build, none otherwise; `make bench` sets `bench`). The
      `bench` feature adds the benchmark baselines, A/B variants and debug NIFs.
    * `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` - honoured by the download
  """
  use Mix.Task.Compiler

  alias Mix.HotpathNative.{Artifact, Cargo, Fetch, Target}

  @impl true
  def run(_args) do
    native = Mix.Project.config()[:hotpath_native]
    installed = installed_path(native)

    cond do
      (prebuilt = System.get_env("HOTPATH_NIF_PATH")) not in [nil, ""] ->
        install_prebuilt(prebuilt, installed)

      source_build?() ->
        source_build(native, installed)

      true ->
        precompiled(native, installed)
    end
  end

  @impl true
  def clean do
    File.rm(installed_path(Mix.Project.config()[:hotpath_native]))
    File.rm(manifest())
    :ok
  end

  @impl true
  def manifests, do: [manifest()]

  defp manifest, do: Path.join(Mix.Project.manifest_path(), "compile.hotpath_cargo")

  defp installed_path(native),
    do: Path.join([Mix.Project.app_path(), "priv", "native", native[:crate] <> ".so"])

  defp source_build? do
    System.get_env("HOTPATH_BUILD") in ["1", "true"] or
      Application.get_env(:hotpath, :build_from_source, false) == true or
      own_checkout?()
  end

  # Hotpath's own checkout is the top-level Mix project. Mix compiles a dependency (path, git or
  # Hex) with the parent's configuration for `:lockfile` (and `:deps_path`), so its lockfile is
  # the application's `mix.lock`, outside Hotpath's directory; the top-level project's is its
  # own `mix.lock` (Elixir 1.14 to 1.20; Hotpath sets no `:lockfile` of its own).
  defp own_checkout? do
    lockfile = Path.expand(Mix.Project.config()[:lockfile] || "mix.lock")
    lockfile == Path.join(File.cwd!(), "mix.lock")
  end

  defp precompiled(native, installed) do
    version = Mix.Project.config()[:version]
    checksum_file = Path.join(File.cwd!(), native[:checksum_file])

    with {:ok, target} <- Target.current(),
         {:ok, nif} <- nif_version(native),
         name = Artifact.tarball_name(native[:crate], version, nif, target),
         {:ok, checksums} <- Artifact.read_checksums(checksum_file),
         {:ok, sum} <- listed(checksums, name, checksum_file) do
      if File.exists?(installed) and read_manifest() == "precompiled #{name} #{sum}" do
        {:noop, []}
      else
        base_url = System.get_env("HOTPATH_NIF_BASE_URL") || native[:base_url]

        case Fetch.fetch(name, sum, base_url, Fetch.cache_dir()) do
          {:ok, tarball, from} ->
            install_tarball(tarball, name, from, installed)
            write_manifest("precompiled #{name} #{sum}")
            {:ok, []}

          {:error, :mismatch, message} ->
            Mix.raise(message <> " (checksum file: #{checksum_file})")

          {:error, :unavailable, message} ->
            source_build_or_raise(
              native,
              installed,
              "#{name} could not be downloaded: #{message}"
            )
        end
      end
    else
      {:error, reason} -> source_build_or_raise(native, installed, reason)
    end
  end

  defp nif_version(native) do
    available = native[:nif_versions]

    case Target.nif_version(Target.vm_nif_version(), available) do
      {:ok, nif} ->
        {:ok, nif}

      :error ->
        {:error,
         "this VM's NIF version #{Target.vm_nif_version()} is older than #{Enum.join(available, ", ")}"}
    end
  end

  defp listed(checksums, name, checksum_file) do
    case Map.fetch(checksums, name) do
      {:ok, sum} -> {:ok, sum}
      :error -> {:error, "no precompiled #{name} is listed in #{Path.basename(checksum_file)}"}
    end
  end

  defp source_build_or_raise(native, installed, reason) do
    if Cargo.find() do
      Mix.shell().info("Building #{native[:crate]} from source: #{reason}")
      source_build(native, installed)
    else
      target = with {:ok, target} <- Target.current(), do: target

      Mix.raise("""
      Hotpath needs cargo to build its native library, and none was found on PATH: \
      there is no precompiled #{native[:crate]} for this machine (target #{inspect(target)}, \
      VM NIF version #{Target.vm_nif_version()}, Hotpath #{Mix.Project.config()[:version]}): #{reason}.
      Three ways out:
        * install #{Cargo.needed()} (https://rustup.rs) and compile again;
        * set HOTPATH_NIF_PATH to a prebuilt #{native[:crate]} library;
        * with Rust installed, HOTPATH_BUILD=1 always builds from source.\
      """)
    end
  end

  defp source_build(native, installed) do
    project_dir = File.cwd!()
    profile = profile()
    features = features()
    build = Enum.join([profile | features], "+")
    sources = native_sources(project_dir)

    if File.exists?(installed) and read_manifest() == build and
         not Mix.Utils.stale?(sources, [installed]) do
      {:noop, []}
    else
      cargo = Cargo.find() || raise_no_cargo()
      Cargo.check_version!(cargo)
      crate_dir = Path.join([project_dir, "native", native[:crate]])
      opts = [target_dir: target_dir(project_dir), profile: profile, features: features]
      artifact = Cargo.build!(cargo, native[:crate], crate_dir, opts)
      copy!(File.read!(artifact), installed)
      write_manifest(build)
      {:ok, []}
    end
  end

  defp raise_no_cargo do
    Mix.raise(
      "Hotpath needs cargo to build its native library, and none was found on PATH. " <>
        "Install #{Cargo.needed()} (https://rustup.rs), or set HOTPATH_NIF_PATH to a " <>
        "prebuilt hotpath_nif library."
    )
  end

  defp install_prebuilt(prebuilt, installed) do
    unless File.regular?(prebuilt) do
      Mix.raise("HOTPATH_NIF_PATH is set to #{inspect(prebuilt)}, which is not a file")
    end

    if File.exists?(installed) and not Mix.Utils.stale?([prebuilt], [installed]) do
      {:noop, []}
    else
      Mix.shell().info("Installing prebuilt hotpath_nif from #{prebuilt} (HOTPATH_NIF_PATH)")
      copy!(File.read!(prebuilt), installed)
      write_manifest("prebuilt")
      {:ok, []}
    end
  end

  defp install_tarball(tarball, name, from, installed) do
    case Artifact.extract(tarball) do
      {:ok, library} ->
        source =
          case from do
            {:cache, path} -> "the cache, #{path}"
            {:download, url} -> url
          end

        Mix.shell().info("Installing precompiled #{name} (checksum verified) from #{source}")
        copy!(library, installed)

      {:error, message} ->
        Mix.raise("#{name}: #{message}")
    end
  end

  defp copy!(library, to) do
    File.mkdir_p!(Path.dirname(to))
    # Remove first: overwriting a library a running VM has mapped can crash that VM.
    File.rm(to)
    File.write!(to, library)
  end

  defp write_manifest(contents) do
    File.mkdir_p!(Path.dirname(manifest()))
    File.write!(manifest(), contents)
  end

  defp read_manifest do
    case File.read(manifest()) do
      {:ok, contents} -> contents
      {:error, _} -> nil
    end
  end

  defp native_sources(project_dir) do
    Path.wildcard(Path.join(project_dir, "native/*/{Cargo.toml,build.rs}")) ++
      Path.wildcard(Path.join(project_dir, "native/*/src/**/*.rs")) ++
      Enum.filter(
        [Path.join(project_dir, "Cargo.toml"), Path.join(project_dir, "Cargo.lock")],
        &File.exists?/1
      )
  end

  defp profile do
    case System.get_env("HOTPATH_CARGO_PROFILE", "release") do
      profile when profile in ["release", "debug"] ->
        profile

      other ->
        Mix.raise("HOTPATH_CARGO_PROFILE must be release or debug, got: #{inspect(other)}")
    end
  end

  # The crate's `bench` feature compiles in the benchmark baselines, the A/B variants and the
  # debug NIFs the test suite calls. Hotpath's own test build enables it (MIX_ENV=test in its
  # own checkout), and `make bench` through HOTPATH_CARGO_FEATURES; a dependency build, the
  # package and the precompiled release artifacts never do.
  defp features do
    case System.get_env("HOTPATH_CARGO_FEATURES") do
      nil -> if Mix.env() == :test and own_checkout?(), do: ["bench"], else: []
      list -> list |> String.split([",", " "], trim: true) |> Enum.sort()
    end
  end

  defp target_dir(project_dir) do
    case System.get_env("HOTPATH_CARGO_TARGET_DIR") do
      dir when dir in [nil, ""] -> Path.join(project_dir, "target")
      dir -> Path.expand(dir)
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
      hotpath_native: native(),
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
    ] ++ run_time_only([Plug.Conn, Phoenix.LiveView, :telemetry])
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

  # The NIF crate, the NIF versions it is built for (its rustler `nif_version_*` features),
  # and where the precompiled artifacts of this version are downloaded from (the GitHub
  # release; HOTPATH_NIF_BASE_URL overrides it). See Mix.Tasks.Compile.HotpathCargo.
  defp native do
    cargo_toml = File.read!(Path.join(__DIR__, "native/hotpath_nif/Cargo.toml"))

    [
      crate: "hotpath_nif",
      nif_versions: Mix.HotpathNative.Target.crate_nif_versions(cargo_toml),
      checksum_file: "checksum-hotpath_nif.exs",
      base_url: "#{@source_url}/releases/download/v#{@version}"
    ]
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
        checksum-hotpath_nif.exs
        .formatter.exs
        README.md
        LICENSE
        CHANGELOG.md
      )
    ]
  end
end
