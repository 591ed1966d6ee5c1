defmodule Mix.HotpathNativeTest do
  # The pure parts of the NIF build (lib/mix/hotpath_native/*.exs, loaded by mix.exs, so
  # present in every `mix test`): target triples, NIF versions, artifact names, the checksum
  # file, tarballs, cargo's JSON messages and the download's request options. The flows that
  # download, verify, cache and install run in scripts/package_check.exs.
  use ExUnit.Case, async: true

  alias Mix.HotpathNative.{Artifact, Cargo, Fetch, JSON, Target}
  alias Hotpath.Opaque

  @moduletag :tmp_dir

  describe "Target.from_system/4" do
    test "Linux gnu and musl, vendors normalised to unknown" do
      unix = {:unix, :linux}

      for {arch, libc, triple} <- [
            {"x86_64-pc-linux-gnu", nil, "x86_64-unknown-linux-gnu"},
            {"x86_64-redhat-linux-gnu", nil, "x86_64-unknown-linux-gnu"},
            {"aarch64-unknown-linux-gnu", :gnu, "aarch64-unknown-linux-gnu"},
            {"x86_64-alpine-linux-musl", nil, "x86_64-unknown-linux-musl"},
            {"aarch64-unknown-linux-musl", :musl, "aarch64-unknown-linux-musl"},
            # a glibc-built BEAM on a musl system, and the reverse: the system's libc decides
            {"x86_64-pc-linux-gnu", :musl, "x86_64-unknown-linux-musl"},
            {"x86_64-pc-linux-musl", :gnu, "x86_64-unknown-linux-gnu"},
            {"arm-unknown-linux-gnueabihf", nil, "arm-unknown-linux-gnueabihf"},
            {"arm-unknown-linux-gnueabihf", :musl, "arm-unknown-linux-musleabihf"},
            {"riscv64-unknown-linux-gnu", nil, "riscv64gc-unknown-linux-gnu"},
            {"amd64-pc-linux-gnu", nil, "x86_64-unknown-linux-gnu"}
          ] do
        assert Target.from_system(arch, unix, 8, libc) == {:ok, triple}, arch
      end
    end

    test "macOS, FreeBSD and Windows" do
      darwin = {:unix, :darwin}

      assert Target.from_system("aarch64-apple-darwin23.4.0", darwin, 8, nil) ==
               {:ok, "aarch64-apple-darwin"}

      assert Target.from_system("arm-apple-darwin22.1.0", darwin, 8, nil) ==
               {:ok, "aarch64-apple-darwin"}

      assert Target.from_system("x86_64-apple-darwin21.6.0", darwin, 8, nil) ==
               {:ok, "x86_64-apple-darwin"}

      assert Target.from_system("amd64-portbld-freebsd14.0", {:unix, :freebsd}, 8, nil) ==
               {:ok, "x86_64-unknown-freebsd"}

      assert Target.from_system("win32", {:win32, :nt}, 8, nil) == {:ok, "x86_64-pc-windows-msvc"}
      assert Target.from_system("win32", {:win32, :nt}, 4, nil) == {:ok, "i686-pc-windows-msvc"}
    end

    test "an unknown architecture string is an error naming it" do
      assert {:error, message} =
               Target.from_system(Opaque.value("sparc"), {:unix, :sunos}, 8, nil)

      assert message =~ ~s("sparc")
    end

    test "this machine has a target" do
      assert {:ok, triple} = Target.current()
      assert triple =~ ~r/^[a-z0-9_]+-[a-z]+-[a-z0-9]+/
    end
  end

  describe "NIF versions" do
    test "the crate's rustler features" do
      toml =
        ~s(rustler = { version = "0.39", features = ["nif_version_2_16", "nif_version_2_15"] })

      assert Target.crate_nif_versions(toml) == ["2.15", "2.16"]
      assert Target.crate_nif_versions(File.read!("native/hotpath_nif/Cargo.toml")) == ["2.16"]
    end

    test "the newest version the VM loads" do
      assert Target.nif_version("2.16", ["2.15", "2.16"]) == {:ok, "2.16"}
      assert Target.nif_version("2.17", ["2.15", "2.16"]) == {:ok, "2.16"}
      assert Target.nif_version("2.17", ["2.16", "2.17"]) == {:ok, "2.17"}
      assert Target.nif_version("2.15", ["2.16"]) == :error
      assert Target.nif_version("3.0", ["2.16"]) == :error
    end
  end

  test "artifact names follow rustler_precompiled" do
    assert Artifact.tarball_name("hotpath_nif", "0.1.0", "2.16", "x86_64-unknown-linux-gnu") ==
             "hotpath_nif-v0.1.0-nif-2.16-x86_64-unknown-linux-gnu.so.tar.gz"

    assert Artifact.tarball_name("hotpath_nif", "0.1.0", "2.16", "aarch64-apple-darwin") ==
             "hotpath_nif-v0.1.0-nif-2.16-aarch64-apple-darwin.so.tar.gz"

    assert Artifact.tarball_name("hotpath_nif", "0.1.0", "2.16", "x86_64-pc-windows-msvc") ==
             "hotpath_nif-v0.1.0-nif-2.16-x86_64-pc-windows-msvc.dll.tar.gz"

    assert Artifact.lib_name("hotpath_nif", "1.2.3-rc.1", "2.17", "aarch64-unknown-linux-musl") ==
             "hotpath_nif-v1.2.3-rc.1-nif-2.17-aarch64-unknown-linux-musl.so"
  end

  describe "the checksum file" do
    test "written sorted, read back, merged", %{tmp_dir: dir} do
      path = Path.join(dir, "checksum-hotpath_nif.exs")
      assert Artifact.read_checksums(path) == {:ok, %{}}
      a = Artifact.checksum("a")
      b = Artifact.checksum("b")
      Artifact.put_checksums!(path, [{"z.tar.gz", a}, {"m.tar.gz", b}])
      assert File.read!(path) == ~s(%{\n  "m.tar.gz" => "#{b}",\n  "z.tar.gz" => "#{a}",\n}\n)
      Artifact.put_checksums!(path, [{"z.tar.gz", b}])
      assert Artifact.read_checksums(path) == {:ok, %{"m.tar.gz" => b, "z.tar.gz" => b}}
      assert a == "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
      assert Artifact.format_checksums(%{}) == "%{}\n"
    end

    test "the repository's file is a map", %{tmp_dir: _} do
      assert {:ok, %{}} = Artifact.read_checksums("checksum-hotpath_nif.exs")
    end

    test "anything but literal names and sums is refused, never evaluated", %{tmp_dir: dir} do
      path = Path.join(dir, "bad.exs")

      for text <- [
            ~s(%{"a" => "md5:00"}),
            ~s(%{"a" => "sha256:#{String.duplicate("A", 64)}"}),
            ~s|%{"a" => File.rm_rf!("/")}|,
            ~s([1, 2]),
            ~s(%{)
          ] do
        File.write!(path, text)
        assert {:error, message} = Artifact.read_checksums(path), text
        assert message =~ path
      end
    end
  end

  test "tarballs hold the library under its name" do
    tarball = Artifact.tarball!("hotpath_nif-v0.1.0-nif-2.16-x.so", "ELF bytes")
    assert Artifact.extract(tarball) == {:ok, "ELF bytes"}

    assert {:ok, [{~c"hotpath_nif-v0.1.0-nif-2.16-x.so", _}]} =
             :erl_tar.extract({:binary, tarball}, [:compressed, :memory])

    assert {:error, "not a gzipped tarball" <> _} = Artifact.extract("not a tarball")
  end

  describe "cargo's JSON messages" do
    @artifact ~s({"reason":"compiler-artifact","package_id":"path+file:///w/native/hotpath_nif#0.1.0",) <>
                ~s("target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"hotpath_nif"},) <>
                ~s("filenames":["FILE"],"executable":null,"fresh":true})

    test "the cdylib of hotpath_nif, wherever cargo put it" do
      dep =
        ~s({"reason":"compiler-artifact","target":{"kind":["lib"],"name":"rustler"},) <>
          ~s("filenames":["/t/release/deps/librustler.rlib"]})

      messages =
        Enum.join(
          [
            ~s({"reason":"build-script-executed","package_id":"x"}),
            dep,
            String.replace(
              @artifact,
              "FILE",
              "/t/x86_64-unknown-linux-gnu/release/libhotpath_nif.so"
            ),
            ~s({"reason":"build-finished","success":true})
          ],
          "\n"
        )

      assert Cargo.artifact_path(messages, "hotpath_nif") ==
               {:ok, "/t/x86_64-unknown-linux-gnu/release/libhotpath_nif.so"}

      assert Cargo.artifact_path(dep, "hotpath_nif") == :error
      assert Cargo.artifact_path("", "hotpath_nif") == :error
    end

    test "escaped characters in paths, Windows files, CRLF and stray lines" do
      windows = ~S(C:\\Users\\J\u00f6rg \"x\"\\t\\hotpath_nif.dll)

      line =
        @artifact
        |> String.replace(~s("FILE"), ~s("#{windows}","C:\\\\t\\\\hotpath_nif.dll.lib"))
        |> String.replace(~s("kind":["cdylib"]), ~s("kind":["rlib","cdylib"]))

      assert Cargo.artifact_path("warning: not json\r\n" <> line <> "\r\n", "hotpath_nif") ==
               {:ok, ~S(C:\Users\Jörg "x"\t\hotpath_nif.dll)}

      emoji = String.replace(@artifact, "FILE", ~S(/t/\ud83e\udd80/libhotpath_nif.dylib))
      assert Cargo.artifact_path(emoji, "hotpath_nif") == {:ok, "/t/🦀/libhotpath_nif.dylib"}
    end

    test "the JSON decoder" do
      assert JSON.decode(~s( {"a": [1, -2.5e3, true, false, null, {}], "b": "\\n\\u0041"} )) ==
               {:ok, %{"a" => [1, -2500.0, true, false, nil, %{}], "b" => "\nA"}}

      assert JSON.decode("[]") == {:ok, []}
      assert JSON.decode("1e3") == {:ok, 1000.0}

      for bad <- [
            ~s({"a" 1}),
            ~s({"a":1,}),
            ~s([1 2]),
            ~s("\\x"),
            ~s("\\ud800"),
            "{",
            "01",
            ~s("a\nb")
          ] do
        assert JSON.decode(bad) == :error, bad
      end
    end
  end

  describe "Fetch.request_options/3" do
    test "HTTPS verifies the peer against the given CA store and the host name" do
      assert {:ok, %{http: http, proxy: nil}} =
               Fetch.request_options(
                 "https://example.test/a.tar.gz",
                 fn _ -> nil end,
                 &fake_cacerts/0
               )

      ssl = http[:ssl]
      assert ssl[:verify] == :verify_peer
      assert ssl[:cacerts] == [:fake_cert]
      assert ssl[:server_name_indication] == ~c"example.test"
      assert is_function(ssl[:customize_hostname_check][:match_fun], 2)
    end

    test "plain HTTP only to loopback" do
      for url <- ["http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:9/x"] do
        assert {:ok, %{proxy: nil}} =
                 Fetch.request_options(url, fn _ -> nil end, &fake_cacerts/0),
               url
      end

      assert {:error, message} =
               Fetch.request_options("http://example.test/x", fn _ -> nil end, &fake_cacerts/0)

      assert message =~ "only loopback"

      assert {:error, _} =
               Fetch.request_options("ftp://example.test/x", fn _ -> nil end, &fake_cacerts/0)
    end

    test "HTTPS_PROXY (with credentials) and NO_PROXY" do
      env = %{
        "https_proxy" => "http://u%40x:p%3Aw@proxy.test:3128",
        "NO_PROXY" => "internal.test, .corp.test"
      }

      assert {:ok, %{http: http, proxy: proxy}} =
               Fetch.request_options("https://example.test/a", &env[&1], &fake_cacerts/0)

      assert proxy == {:https_proxy, {{~c"proxy.test", 3128}, []}}
      assert http[:proxy_auth] == {~c"u@x", ~c"p:w"}

      for host <- ["internal.test", "a.corp.test"] do
        assert {:ok, %{proxy: nil}} =
                 Fetch.request_options("https://#{host}/a", &env[&1], &fake_cacerts/0)
      end

      http_proxy = %{"HTTP_PROXY" => "http://p2.test:8080"}

      assert {:ok, %{proxy: {:https_proxy, {{~c"p2.test", 8080}, []}}, http: http}} =
               Fetch.request_options("https://e.test/a", &http_proxy[&1], &fake_cacerts/0)

      refute Keyword.has_key?(http, :proxy_auth)

      assert {:error, message} =
               Fetch.request_options(
                 "https://e.test/a",
                 &%{"HTTPS_PROXY" => "::"}[&1],
                 &fake_cacerts/0
               )

      assert message =~ "HTTPS_PROXY"
    end

    test "the cache: HOTPATH_CACHE_DIR, else the user cache directory" do
      assert Fetch.cache_dir(&%{"HOTPATH_CACHE_DIR" => "/tmp/c"}[&1]) == "/tmp/c"
      default = Fetch.cache_dir(fn _ -> nil end)
      assert default == Path.join(:filename.basedir(:user_cache, ~c"hotpath"), "nif")
    end
  end

  defp fake_cacerts, do: [:fake_cert]
end
