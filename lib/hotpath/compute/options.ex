defmodule Hotpath.Compute.Options do
  @moduledoc false
  # The option schemas of `Hotpath.Compute` (`start_link/1` and `child_spec/1`, `run/3`,
  # `spin/2`) and their validation.

  @name_type {:or,
              [
                :name,
                {:custom, __MODULE__, :global_or_via, "{:global, term} or {:via, module, term}"}
              ]}

  @start_schema [
    name: [
      type: @name_type,
      required: true,
      doc: "The name to register the pool under"
    ],
    max_concurrency: [
      type: {:integer, 1, :infinity},
      doc_default: "`default_max_concurrency/0`",
      doc: "Jobs running at once"
    ],
    max_queue: [
      type: {:integer, 0, :infinity},
      default: 100,
      doc:
        "Jobs waiting beyond those (0 refuses any job that cannot start at once). A queue " <>
          "longer than `timeout / job time × max_concurrency` only turns overload into timeouts"
    ]
  ]

  @run_schema [
    timeout: [
      # The largest timeout `receive ... after` accepts.
      type: {:or, [{:integer, 0, 4_294_967_295}, {:value, :infinity}]},
      default: 5_000,
      doc: "Milliseconds, queue time included"
    ]
  ]

  @spin_schema [
    step_us: [
      type: {:integer, 1, 1_000_000},
      default: 10_000,
      doc: "The length of one step (one dirty NIF call) in microseconds"
    ],
    notify: [
      type: {:or, [{:value, nil}, :pid]},
      default: nil,
      doc:
        "Sent `{:hotpath_compute_job, job}` when the job starts, so another process can " <>
          "watch it with `job_info/1` or stop it with `cancel/1`"
    ],
    panic_at: [
      type: {:or, [{:value, nil}, {:integer, 0, :infinity}]},
      default: nil,
      doc: "Panic during that step (0-based): `{:error, {:panic, message}}`"
    ]
  ]

  @doc false
  def docs(:start), do: Hotpath.Options.docs(@start_schema)
  def docs(:run), do: Hotpath.Options.docs(@run_schema)
  def docs(:spin), do: Hotpath.Options.docs(@spin_schema)

  @doc false
  # The configuration of a pool (`Hotpath.Compute.Pool.init/1`).
  def start!(opts) do
    opts = Hotpath.Options.validate!(opts, @start_schema, "Hotpath.Compute.start_link/1")

    %{
      name: opts[:name],
      max_concurrency:
        Keyword.get_lazy(opts, :max_concurrency, &Hotpath.Compute.default_max_concurrency/0),
      max_queue: opts[:max_queue]
    }
  end

  @doc false
  # The `{:global, _}` and `{:via, _, _}` names of a pool (a type of the options schema).
  def global_or_via({:global, _} = name), do: {:ok, name}
  def global_or_via({:via, module, _} = name) when is_atom(module), do: {:ok, name}
  def global_or_via(_other), do: :error

  @doc false
  # The timeout of a valid `run/3` call.
  def run!(job, opts) do
    case job do
      fun when is_function(fun, 0) ->
        :ok

      {m, f, a} when is_atom(m) and is_atom(f) and is_list(a) ->
        :ok

      other ->
        raise ArgumentError,
              "a job must be a 0-arity function or {module, function, args}, got: #{inspect(other)}"
    end

    Hotpath.Options.validate!(opts, @run_schema, "Hotpath.Compute.run/3")[:timeout]
  end

  @doc false
  def spin!(opts), do: Hotpath.Options.validate!(opts, @spin_schema, "Hotpath.Compute.spin/2")
end
