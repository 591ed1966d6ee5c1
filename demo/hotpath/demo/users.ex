defmodule Hotpath.Demo.Users do
  @moduledoc false
  # The demo's one user, its password hashed once at start with the demo's argon2 costs, and
  # a dummy hash with the same costs so an unknown user costs as much as a known one.

  use Agent

  def start_link(password_opts) do
    {user, password} = Hotpath.Demo.credentials()

    Agent.start_link(
      fn ->
        %{
          users: %{user => Hotpath.Password.hash_pwd_salt(password, password_opts)},
          dummy: Hotpath.Password.hash_pwd_salt("no such user", password_opts)
        }
      end,
      name: __MODULE__
    )
  end

  @doc "`{:known, hash}` or `{:unknown, dummy_hash}`."
  def lookup(user) do
    Agent.get(__MODULE__, fn %{users: users, dummy: dummy} ->
      case Map.fetch(users, user) do
        {:ok, hash} -> {:known, hash}
        :error -> {:unknown, dummy}
      end
    end)
  end
end
