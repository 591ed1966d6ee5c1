[
  inputs: ["{mix,.formatter}.exs", "{config,lib,demo,test,benches,scripts}/**/*.{ex,exs}"]
]
