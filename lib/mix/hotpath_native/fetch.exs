defmodule Mix.HotpathNative.Fetch do
  @moduledoc false
  # Gets a precompiled NIF tarball: from the cache when a verified copy is there, else over
  # HTTP(S) with retries. The SHA-256 is checked before the tarball is cached or returned, so
  # nothing unverified reaches the cache or the build path.
  #
  # Loaded by mix.exs (Code.require_file), never compiled into the :hotpath application.

  alias Mix.HotpathNative.Artifact

  @attempts 3
  @loopback ["127.0.0.1", "localhost", "::1"]

  @doc "The cache directory: `HOTPATH_CACHE_DIR`, else `nif/` in the user cache dir of hotpath."
  def cache_dir(get_env \\ &System.get_env/1) do
    case get_env.("HOTPATH_CACHE_DIR") do
      dir when dir in [nil, ""] -> Path.join(:filename.basedir(:user_cache, ~c"hotpath"), "nif")
      dir -> Path.expand(dir)
    end
  end

  @doc """
  The verified tarball `name` (its sum `expected`): `{:ok, tarball, from}` where `from` is
  `{:cache, path}` or `{:download, url}`; `{:error, :mismatch, message}` when a download does
  not match (nothing is cached); `{:error, :unavailable, message}` when it cannot be had.
  """
  def fetch(name, expected, base_url, cache_dir) do
    cached = Path.join(cache_dir, name)

    case File.read(cached) do
      {:ok, tarball} ->
        if Artifact.checksum(tarball) == expected do
          {:ok, tarball, {:cache, cached}}
        else
          Mix.shell().info("Discarding #{cached}: its checksum does not match; downloading it")
          File.rm(cached)
          download(name, expected, base_url, cached)
        end

      {:error, _} ->
        download(name, expected, base_url, cached)
    end
  end

  defp download(name, expected, base_url, cached) do
    url = String.trim_trailing(base_url, "/") <> "/" <> name

    with {:ok, options} <- request_options(url, &System.get_env/1),
         {:ok, tarball} <- get(url, options, @attempts) do
      case Artifact.checksum(tarball) do
        ^expected ->
          File.mkdir_p!(Path.dirname(cached))
          tmp = cached <> ".part#{System.unique_integer([:positive])}"
          File.write!(tmp, tarball)
          File.rename!(tmp, cached)
          {:ok, tarball, {:download, url}}

        actual ->
          {:error, :mismatch,
           "checksum mismatch for #{name} (downloaded from #{url}): " <>
             "expected #{expected} (from the checksum file), got #{actual}. " <>
             "Nothing was installed or cached."}
      end
    else
      {:error, message} -> {:error, :unavailable, message}
    end
  end

  @doc """
  `:httpc` options for `url`: `{:ok, %{http: http_options, proxy: nil | {key, {host, port}}}}`
  or `{:error, message}`. HTTPS verifies the peer against the OS certificate store and checks
  the host name; plain HTTP is refused except to loopback. `get_env` reads HTTP(S)_PROXY and
  NO_PROXY (upper or lower case); HTTPS_PROXY wins over HTTP_PROXY.
  """
  def request_options(url, get_env, cacerts \\ &:public_key.cacerts_get/0) do
    uri = URI.parse(url)

    case uri do
      %URI{scheme: "https", host: host} when is_binary(host) and host != "" ->
        ssl = [
          verify: :verify_peer,
          cacerts: cacerts.(),
          depth: 4,
          server_name_indication: String.to_charlist(host),
          customize_hostname_check: [
            match_fun: :public_key.pkix_verify_hostname_match_fun(:https)
          ]
        ]

        with_proxy(uri, [ssl: ssl] ++ timeouts(), get_env)

      %URI{scheme: "http", host: host} when host in @loopback ->
        {:ok, %{http: timeouts(), proxy: nil}}

      %URI{scheme: "http"} ->
        {:error, "refusing plain http:// for #{url}: only loopback may use http, use https"}

      _ ->
        {:error, "not an http(s) URL: #{inspect(url)}"}
    end
  end

  defp timeouts, do: [timeout: 120_000, connect_timeout: 15_000]

  # HTTPS_PROXY, else HTTP_PROXY (upper or lower case): the proxy of the https download.
  defp with_proxy(uri, http, get_env) do
    var =
      Enum.find(
        ~w(HTTPS_PROXY https_proxy HTTP_PROXY http_proxy),
        &(get_env.(&1) not in [nil, ""])
      )

    proxy = var && get_env.(var)

    cond do
      proxy in [nil, ""] or no_proxy?(uri.host, get_env) ->
        {:ok, %{http: http, proxy: nil}}

      true ->
        case URI.parse(proxy) do
          %URI{host: host, port: port, userinfo: userinfo} when is_binary(host) and host != "" ->
            http = http ++ proxy_auth(userinfo)
            {:ok, %{http: http, proxy: {:https_proxy, {{String.to_charlist(host), port}, []}}}}

          _ ->
            {:error, "#{var} is not a URL: #{inspect(proxy)}"}
        end
    end
  end

  defp no_proxy?(host, get_env) do
    (get_env.("NO_PROXY") || get_env.("no_proxy") || "")
    |> String.split(",", trim: true)
    |> Enum.map(&(&1 |> String.trim() |> String.trim_leading("*") |> String.trim_leading(".")))
    |> Enum.any?(&(&1 == "*" or host == &1 or String.ends_with?(host, "." <> &1)))
  end

  defp proxy_auth(nil), do: []

  defp proxy_auth(userinfo) do
    [user | pass] = String.split(userinfo, ":", parts: 2)

    [
      proxy_auth:
        {String.to_charlist(URI.decode(user)), String.to_charlist(URI.decode(Enum.join(pass)))}
    ]
  end

  defp get(url, options, attempts_left) do
    profile = start_httpc!(options.proxy)
    request = {String.to_charlist(url), [{~c"user-agent", ~c"hotpath-mix"}]}

    case :httpc.request(:get, request, options.http, [body_format: :binary], profile) do
      {:ok, {{_, 200, _}, _headers, body}} ->
        {:ok, body}

      {:ok, {{_, status, _}, _headers, _body}} when status in 400..499 ->
        {:error, "GET #{url} answered HTTP #{status}"}

      other when attempts_left > 1 ->
        wait = 1_000 * (@attempts - attempts_left + 1)

        Mix.shell().info(
          "GET #{url} failed (#{describe(other)}); retrying in #{div(wait, 1000)} s"
        )

        Process.sleep(wait)
        get(url, options, attempts_left - 1)

      other ->
        {:error, "GET #{url} failed after #{@attempts} attempts: #{describe(other)}"}
    end
  end

  defp describe({:ok, {{_, status, _}, _, _}}), do: "HTTP #{status}"
  defp describe({:error, reason}), do: inspect(reason)

  # Mix 1.15+ prunes OTP applications a dependency does not list from its compile: put them
  # back (Mix.ensure_application!/1), then start them. Elixir 1.14 prunes nothing.
  defp start_httpc!(proxy) do
    for app <- [:crypto, :asn1, :public_key, :ssl, :inets] do
      if function_exported?(Mix, :ensure_application!, 1),
        do: apply(Mix, :ensure_application!, [app])

      {:ok, _} = Application.ensure_all_started(app)
    end

    # Its own :httpc profiles: one without a proxy, one with (httpc cannot unset a proxy).
    profile = if proxy, do: :hotpath_nif_proxy, else: :hotpath_nif

    case :inets.start(:httpc, profile: profile) do
      {:ok, _} -> :ok
      {:error, {:already_started, _}} -> :ok
    end

    if proxy, do: :ok = :httpc.set_options([proxy], profile)
    profile
  end
end
