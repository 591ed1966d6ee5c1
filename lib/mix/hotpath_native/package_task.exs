defmodule Mix.Tasks.Hotpath.Native.Package do
  @shortdoc "Builds the precompiled NIF tarball for a target and records its checksum"
  @moduledoc """
  Builds Hotpath's release NIF and packages it the way the `:hotpath_cargo` compiler downloads
  it, for the machine it runs on or a given target:

      mix hotpath.native.package [--out DIR] [--target TRIPLE] [--from LIBRARY]

  Writes `lib<crate>-v<version>-nif-<nif version>-<target>.so.tar.gz` (`<crate>-...dll.tar.gz`
  for Windows) into `DIR` (default `target/precompiled`) and adds its `"sha256:<hex>"` to
  `checksum-hotpath_nif.exs` at the project root, which the package ships.

    * `--target TRIPLE` - a Rust target triple (default: this machine's, see
      `Mix.HotpathNative.Target`); passed to `cargo build --target`
    * `--from LIBRARY` - package this already built library instead of running cargo (the
      release workflow builds each target elsewhere; the no-cargo CI lane uses the host build)
    * `--checksum-file PATH` - the checksum file to update (default: the project's)

  The NIF version is the one the crate is built for (its rustler `nif_version_*` feature).
  """
  use Mix.Task

  alias Mix.HotpathNative.{Artifact, Cargo, Target}

  @switches [out: :string, target: :string, from: :string, checksum_file: :string]

  @impl true
  def run(args) do
    {opts, _} = OptionParser.parse!(args, strict: @switches)
    config = Mix.Project.config()
    native = Keyword.fetch!(config, :hotpath_native)
    crate = Keyword.fetch!(native, :crate)
    project_dir = File.cwd!()
    crate_dir = Path.join([project_dir, "native", crate])

    target = opts[:target] || current_target!()

    nif_version =
      crate_dir
      |> Path.join("Cargo.toml")
      |> File.read!()
      |> Target.crate_nif_versions()
      |> List.last() ||
        Mix.raise("#{crate}'s Cargo.toml enables no rustler nif_version_* feature")

    library =
      case opts[:from] do
        nil ->
          cargo =
            Cargo.find() ||
              Mix.raise(
                "mix hotpath.native.package needs cargo (#{Cargo.needed()}), or --from LIBRARY"
              )

          Cargo.check_version!(cargo)

          target_dir =
            System.get_env("HOTPATH_CARGO_TARGET_DIR") || Path.join(project_dir, "target")

          Cargo.build!(cargo, crate, crate_dir,
            target_dir: Path.expand(target_dir),
            profile: "release",
            target: opts[:target]
          )

        path ->
          File.regular?(path) || Mix.raise("--from #{path}: not a file")
          path
      end

    name = Artifact.lib_name(crate, config[:version], nif_version, target)
    tarball = Artifact.tarball!(name, File.read!(library))
    out = Path.expand(opts[:out] || Path.join(project_dir, "target/precompiled"))
    File.mkdir_p!(out)
    path = Path.join(out, name <> ".tar.gz")
    File.write!(path, tarball)

    checksum_file =
      Path.expand(
        opts[:checksum_file] || Path.join(project_dir, Keyword.fetch!(native, :checksum_file))
      )

    sum = Artifact.checksum(tarball)
    Artifact.put_checksums!(checksum_file, [{Path.basename(path), sum}])
    Mix.shell().info("Packaged #{library}\n  as #{path}\n  #{sum} recorded in #{checksum_file}")
    path
  end

  defp current_target! do
    case Target.current() do
      {:ok, target} -> target
      {:error, message} -> Mix.raise(message)
    end
  end
end
