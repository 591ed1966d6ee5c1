defmodule Hotpath.Password do
  @moduledoc """
  argon2id password hashing with standard PHC strings, on dirty CPU schedulers.

  A drop-in for the password module of `mix phx.gen.auth` (`Bcrypt`, `Pbkdf2`, `Argon2`):

      Hotpath.Password.hash_pwd_salt("hunter2")
      #=> "$argon2id$v=19$m=19456,t=2,p=1$...$..."
      Hotpath.Password.verify_pass("hunter2", hash)
      #=> true
      Hotpath.Password.no_user_verify()
      #=> false

  Hashes are `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>`, the format of
  the reference implementation, argon2-cffi, argon2_elixir and libsodium: each verifies the
  others' hashes. Verification accepts argon2id, argon2i and argon2d, versions 19 and 16,
  and compares in constant time. A malformed or foreign hash makes `verify_pass/3` return
  `false` and `verify/3` return `{:error, {:malformed | :incompatible, message}}`; it never
  raises or crashes.

  ## Costs

  The defaults follow the OWASP Password Storage Cheat Sheet: `m_cost: 19_456` (19 MiB),
  `t_cost: 2`, `parallelism: 1`, 16-byte salt, 32-byte hash; about 40 ms per hash on a
  2020s server core. Lanes are computed one after the other on one dirty scheduler (Hotpath
  starts no threads), so raising `parallelism` raises the cost, not the speed. Each dirty
  scheduler thread keeps its argon2 memory (up to 64 MiB; 19 MiB at the defaults) for the
  next hash, wiped after every hash.

  argon2 cannot be interrupted once started, so costs are capped: `hash/2`, `hash_pwd_salt/2`
  and `raw_hash/3` accept `m_cost` 8..262 144 KiB (256 MiB), `t_cost` 1..8 and `parallelism`
  1..64 (and `m_cost >= 8 * parallelism`); one hash at the caps is about 2 GiB of memory
  passes, about 2 s on a 2020s server core, a few seconds on a slow one.

  Because the stored hash decides the cost of verifying it, `verify/3` refuses hashes whose
  costs exceed `:max_m_cost` (default 262 144 KiB = 256 MiB), `:max_t_cost` (default 8) or
  `:max_parallelism` (default 64) before allocating anything: every hash `hash/2` can make
  verifies with the defaults, and so do the common profiles (OWASP, RFC 9106 low-memory
  `m=65536,t=3,p=4` as in argon2-cffi, argon2_elixir's defaults, libsodium's interactive and
  moderate). Raising the limits for foreign hashes is the caller's choice, up to
  `max_m_cost: 1_048_576`, `max_t_cost: 16`, `max_parallelism: 255` (then up to ~20 s per
  verification).

  PHC strings are parsed as strictly as the reference implementation (and argon2-cffi) does:
  `m`, `t`, `p` exactly once each and in this order, decimal numbers without sign or leading
  zeros, canonical unpadded base64; anything else is `{:malformed, message}` (or
  `{:incompatible, message}` for `keyid`/`data` parameters and other algorithms).

  ## Running behind a `Hotpath.Compute` pool

  With `compute: pool`, hashing and verification run as jobs of that pool: at most
  `max_concurrency` at once, a bounded queue, and `:timeout` (default 5000 ms). A pool error
  (`:overloaded`, `:timeout`, `:not_running` when no pool runs under that name, ...) makes
  `hash/2` and `verify/3` return `{:error, reason}`, and the Phoenix-style functions
  (`hash_pwd_salt/2`, `verify_pass/3`, `no_user_verify/1`) raise `Hotpath.NotRunningError`
  (no pool) or `Hotpath.Compute.Error` (any other pool error);
  none of them exits the caller. `:compute` must be `nil`, a pool's name (an atom,
  `{:global, term}`, `{:via, module, term}`, `{atom, node}`) or pid, and `:timeout` a
  non-negative integer or `:infinity`: anything else raises `ArgumentError`, as does a local
  process that is not a `Hotpath.Compute` pool.

  Options can be set for the whole application, which is how the zero-option calls of a
  Phoenix app pick them up:

      config :hotpath, Hotpath.Password, compute: MyApp.Compute, timeout: 2_000

  Keys given to a function override the configured ones.
  """

  alias Hotpath.Native

  @max_m_cost 262_144
  @max_t_cost 8
  @max_p_cost 64

  @pool_type {:custom, __MODULE__, :pool_option,
              "nil or a Hotpath.Compute pool: its name (an atom, {:global, term}, " <>
                "{:via, module, term} or {atom, node}) or pid"}

  # Every option a function or the application config takes.
  @schema [
    m_cost: [
      type: {:integer, 8, @max_m_cost},
      default: 19_456,
      doc_default: "19 456 (19 MiB)",
      doc: "Memory in KiB, at least `8 * parallelism`"
    ],
    t_cost: [type: {:integer, 1, @max_t_cost}, default: 2, doc: "Iterations"],
    parallelism: [type: {:integer, 1, @max_p_cost}, default: 1, doc: "Lanes"],
    hash_len: [type: {:integer, 16, 64}, default: 32, doc: "Hash length in bytes"],
    salt_len: [type: {:integer, 8, 48}, default: 16, doc: "Salt length in bytes"],
    max_m_cost: [
      type: {:integer, 8, 1_048_576},
      default: 262_144,
      doc: "The largest `m` of a stored hash that is verified (KiB)"
    ],
    max_t_cost: [
      type: {:integer, 1, 16},
      default: 8,
      doc: "The largest `t` of a stored hash that is verified"
    ],
    max_parallelism: [
      type: {:integer, 1, 255},
      default: 64,
      doc: "The largest `p` of a stored hash that is verified"
    ],
    compute: [
      type: @pool_type,
      default: nil,
      doc_default: "`nil`: in the caller",
      doc: "The `Hotpath.Compute` pool to run in"
    ],
    timeout: [
      # The largest timeout `receive ... after` accepts.
      type: {:or, [{:integer, 0, 4_294_967_295}, {:value, :infinity}]},
      default: 5_000,
      doc: "With `:compute`, milliseconds to wait, queue time included"
    ]
  ]
  # The defaults, under the application config and the options given (so they are not
  # filled in by the validation of the options given).
  @defaults Enum.map(@schema, fn {key, spec} -> {key, spec[:default]} end)
  @given Enum.map(@schema, fn {key, spec} -> {key, Keyword.delete(spec, :default)} end)

  @hash_schema Keyword.take(@schema, [
                 :m_cost,
                 :t_cost,
                 :parallelism,
                 :hash_len,
                 :salt_len,
                 :compute,
                 :timeout
               ])
  @verify_schema Keyword.take(@schema, [
                   :max_m_cost,
                   :max_t_cost,
                   :max_parallelism,
                   :compute,
                   :timeout
                 ])
  @raw_schema [
    variant: [type: {:in, [:argon2id, :argon2i, :argon2d]}, default: :argon2id],
    version: [type: {:in, [19, 16]}, default: 19],
    secret: [type: {:custom, __MODULE__, :binary_option, "a binary"}, default: ""],
    associated_data: [type: {:custom, __MODULE__, :binary_option, "a binary"}, default: ""],
    m_cost: [type: {:integer, 8, @max_m_cost}, default: 19_456],
    t_cost: [type: {:integer, 1, @max_t_cost}, default: 2],
    parallelism: [type: {:integer, 1, @max_p_cost}, default: 1],
    hash_len: [type: {:integer, 4, 1024}, default: 32]
  ]

  @typedoc "Errors of `hash/2` and `verify/3`."
  @type error ::
          {:malformed, String.t()} | {:incompatible, String.t()} | Hotpath.Compute.result()

  @doc """
  Hashes `password` with a fresh random salt and returns the PHC string.

  Options (defaults from `config :hotpath, Hotpath.Password` first):

  #{Hotpath.Options.docs(@hash_schema)}

  Raises `ArgumentError` for bad arguments, `Hotpath.NotRunningError` when no pool runs under
  the `:compute` name and `Hotpath.Compute.Error` when the pool cannot run the job.

      iex> hash = Hotpath.Password.hash_pwd_salt("hunter2", m_cost: 64, t_cost: 1)
      iex> "$argon2id$v=19$m=64,t=1,p=1$" <> _ = hash
      iex> Hotpath.Password.verify_pass("hunter2", hash)
      true
  """
  @spec hash_pwd_salt(binary(), keyword()) :: String.t()
  def hash_pwd_salt(password, opts \\ []) do
    case hash(password, opts) do
      {:ok, phc} ->
        phc

      {:error, reason} ->
        pool_error!(reason, options(opts, @hash_schema, "hash_pwd_salt/2")[:compute])
    end
  end

  @doc """
  Like `hash_pwd_salt/2`, returning `{:ok, phc}` or `{:error, reason}` (a pool's error).
  """
  @spec hash(binary(), keyword()) :: {:ok, String.t()} | {:error, error()}
  def hash(password, opts \\ []) do
    check_password!(password)
    opts = options(opts, @hash_schema, "Hotpath.Password.hash/2")
    m = opts[:m_cost]
    t = opts[:t_cost]
    p = opts[:parallelism]
    hash_len = opts[:hash_len]
    salt_len = opts[:salt_len]

    if m < 8 * p do
      raise ArgumentError,
            ":m_cost must be at least 8 KiB per lane (8 * parallelism = #{8 * p}), got: #{m}"
    end

    salt = :crypto.strong_rand_bytes(salt_len)
    run(opts, fn -> {:ok, Native.password_hash(password, salt, m, t, p, hash_len)} end)
  end

  @doc """
  Checks `password` against a stored PHC string in constant time.

  Returns `false` for a wrong password and for a malformed or foreign hash. Options
  (defaults from `config :hotpath, Hotpath.Password` first):

  #{Hotpath.Options.docs(@verify_schema)}

  Raises `ArgumentError` for bad arguments, `Hotpath.NotRunningError` when no pool runs under
  the `:compute` name and `Hotpath.Compute.Error` when the pool cannot run the job.

      iex> Hotpath.Password.verify_pass("password",
      ...>   "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8")
      true
      iex> Hotpath.Password.verify_pass("password", "not a hash")
      false
  """
  @spec verify_pass(binary(), binary(), keyword()) :: boolean()
  def verify_pass(password, stored_hash, opts \\ []) do
    case verify(password, stored_hash, opts) do
      {:ok, valid?} ->
        valid?

      {:error, {reason, _message}} when reason in [:malformed, :incompatible] ->
        false

      {:error, reason} ->
        pool_error!(reason, options(opts, @verify_schema, "verify_pass/3")[:compute])
    end
  end

  @doc """
  Like `verify_pass/3`, but says why a hash could not be checked:
  `{:ok, boolean}`, `{:error, {:malformed, message}}` (not an argon2 PHC string),
  `{:error, {:incompatible, message}}` (another algorithm, or costs above the limits), or a
  pool's error.

      iex> Hotpath.Password.verify("pw", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW")
      {:error, {:incompatible, "unsupported algorithm \\\"2b\\\"; supported: argon2id, argon2i, argon2d"}}
      iex> Hotpath.Password.verify("pw", "$argon2id$v=19$m=64,m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$3fUQ941rsmo3/Cpi+6K2zMNtfMLWcfukgfsepsnYCw4")
      {:error, {:malformed, "parameter m appears twice"}}
  """
  @spec verify(binary(), binary(), keyword()) :: {:ok, boolean()} | {:error, error()}
  def verify(password, stored_hash, opts \\ []) do
    check_password!(password)

    if not is_binary(stored_hash) do
      raise ArgumentError,
            "the stored hash must be a binary, got: #{inspect(stored_hash, limit: 10)}"
    end

    opts = options(opts, @verify_schema, "Hotpath.Password.verify/3")
    max_m = opts[:max_m_cost]
    max_t = opts[:max_t_cost]
    max_p = opts[:max_parallelism]

    run(opts, fn ->
      case Native.password_verify(password, stored_hash, max_m, max_t, max_p) do
        valid? when is_boolean(valid?) -> {:ok, valid?}
        {:error, _} = error -> error
      end
    end)
  end

  @doc """
  Does the work of one hash and returns `false`: call it when no user matches a login, so an
  attacker cannot tell unknown accounts by the response time. Takes `hash_pwd_salt/2`'s
  options.

      iex> Hotpath.Password.no_user_verify(m_cost: 64, t_cost: 1)
      false
  """
  @spec no_user_verify(keyword()) :: false
  def no_user_verify(opts \\ []) do
    _ = hash_pwd_salt("hotpath-no-user-verify", opts)
    false
  end

  @doc """
  `true` when `stored_hash` was made with other parameters than `hash_pwd_salt/2` would use
  now (or is not an argon2id v19 hash at all): rehash the password at the next login.

      iex> hash = Hotpath.Password.hash_pwd_salt("pw", m_cost: 64, t_cost: 1)
      iex> Hotpath.Password.needs_rehash?(hash, m_cost: 64, t_cost: 1)
      false
      iex> Hotpath.Password.needs_rehash?(hash)
      true
  """
  @spec needs_rehash?(binary(), keyword()) :: boolean()
  def needs_rehash?(stored_hash, opts \\ []) do
    opts = options(opts, @hash_schema, "Hotpath.Password.needs_rehash?/2")

    case info(stored_hash) do
      {:ok, info} ->
        {info.algorithm, info.version, info.m_cost, info.t_cost, info.parallelism, info.hash_len} !=
          {:argon2id, 19, opts[:m_cost], opts[:t_cost], opts[:parallelism], opts[:hash_len]}

      {:error, _} ->
        true
    end
  end

  @doc """
  The parameters a PHC string declares, read without hashing (microseconds).

      iex> Hotpath.Password.info("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$K13EBUiG7JV+9ZxztmHFTdb7J0WQsnj2V8bZaqyPptE")
      {:ok, %{algorithm: :argon2id, version: 19, m_cost: 19456, t_cost: 2, parallelism: 1,
              salt_len: 16, hash_len: 32}}
  """
  @spec info(binary()) ::
          {:ok,
           %{
             algorithm: :argon2id | :argon2i | :argon2d,
             version: 16 | 19,
             m_cost: pos_integer(),
             t_cost: pos_integer(),
             parallelism: pos_integer(),
             salt_len: pos_integer(),
             hash_len: pos_integer()
           }}
          | {:error, {:malformed | :incompatible, String.t()}}
  def info(stored_hash) when is_binary(stored_hash) do
    case Native.password_info(stored_hash) do
      {:error, _} = error -> error
      info -> {:ok, info}
    end
  end

  def info(other),
    do:
      raise(ArgumentError, "the stored hash must be a binary, got: #{inspect(other, limit: 10)}")

  @doc """
  The raw argon2 function of RFC 9106 (no PHC encoding), on a dirty scheduler: a key
  derivation primitive, and the function the RFC's test vectors check. Use `hash_pwd_salt/2`
  to store passwords.

  Options: `:variant` (`:argon2id` default, `:argon2i`, `:argon2d`), `:version` (19 default,
  or 16), `:secret` and `:associated_data` (binaries, default empty), `:m_cost`, `:t_cost`,
  `:parallelism` (the caps of `hash/2`: 8..262 144, 1..8, 1..64), `:hash_len` (4..1024,
  default 32). The salt must be at least 8 bytes.

      iex> Hotpath.Password.raw_hash(:binary.copy(<<1>>, 32), :binary.copy(<<2>>, 16),
      ...>   secret: :binary.copy(<<3>>, 8), associated_data: :binary.copy(<<4>>, 12),
      ...>   m_cost: 32, t_cost: 3, parallelism: 4)
      ...> |> Base.encode16(case: :lower)
      "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
  """
  @spec raw_hash(binary(), binary(), keyword()) :: binary()
  def raw_hash(password, salt, opts \\ []) do
    check_password!(password)

    if not is_binary(salt) do
      raise ArgumentError, "the salt must be a binary, got: #{inspect(salt, limit: 10)}"
    end

    opts = Hotpath.Options.validate!(opts, @raw_schema, "Hotpath.Password.raw_hash/3")

    costs =
      {opts[:variant], opts[:version], opts[:m_cost], opts[:t_cost], opts[:parallelism],
       opts[:hash_len]}

    Native.password_raw(password, salt, opts[:secret], opts[:associated_data], costs)
  end

  # ---- helpers ------------------------------------------------------------------------

  defp pool_error!(:not_running, pool),
    do: raise(Hotpath.NotRunningError, module: Hotpath.Compute, name: pool)

  defp pool_error!(reason, pool), do: raise(Hotpath.Compute.Error, reason: reason, pool: pool)

  defp run(opts, fun) do
    case opts[:compute] do
      nil -> fun.()
      # {:error, :not_running} when the pool is not running: never an exit.
      pool -> Hotpath.Compute.run(pool, fun, timeout: opts[:timeout])
    end
  end

  defp options(opts, schema, where) do
    opts = Hotpath.Options.validate!(opts, Keyword.take(@given, Keyword.keys(schema)), where)

    config =
      Hotpath.Options.validate!(
        Application.get_env(:hotpath, __MODULE__, []),
        @given,
        "config :hotpath, Hotpath.Password"
      )

    @defaults |> Keyword.merge(config) |> Keyword.merge(opts)
  end

  # Types of the options schemas.
  @doc false
  def pool_option(nil), do: {:ok, nil}
  def pool_option(pid) when is_pid(pid), do: {:ok, pid}
  def pool_option(name) when is_atom(name) and name not in [true, false], do: {:ok, name}
  def pool_option({:global, _} = pool), do: {:ok, pool}
  def pool_option({:via, module, _} = pool) when is_atom(module), do: {:ok, pool}
  def pool_option({name, node} = pool) when is_atom(name) and is_atom(node), do: {:ok, pool}
  def pool_option(_other), do: :error

  @doc false
  def binary_option(bin) when is_binary(bin), do: {:ok, bin}
  def binary_option(_other), do: :error

  defp check_password!(password) when is_binary(password), do: :ok

  defp check_password!(other),
    do: raise(ArgumentError, "the password must be a binary, got: #{inspect(other, limit: 10)}")
end
