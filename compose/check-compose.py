#!/usr/bin/env python3
"""Checks the deployment files against the code, without a Docker engine.

  check-compose.py --bin-dir DIR [--root REPO]

- `docker-compose config` (Debian's docker-compose) accepts every compose file with its example env file;
- every Tributary service in them runs: its executable, with the compose command's arguments and the service's
  environment, passes `--dry-run` (the CLI: `--help` of that subcommand), and every TRIBUTARY_* variable it is
  given is one that executable documents in its --help (unknown variables would be silently ignored);
- every secret a broker's templates need (render-secrets.sh: ${NAME} in definitions.json, users.acl, ...) is in that
  service's environment;
- every Tributary service reads checkpoints from a Redis of their own (TRIBUTARY_CHECKPOINTS_REDIS_URL, not its
  TRIBUTARY_REDIS_URL), as the same user; the remote workers read them from the relay, and the relay replicates the
  port the central checkpoint Redis publishes;
- the checkpoint Redis's ACL has the users of the run's, and the relay's ACL gives rollout workers the checkpoint
  Redis's rights;
- the runtime image installs a Debian package for every shared library the executables link directly;
- docs/deploy.md names only files and compose services that exist.
Prints one line per check; exits 1 if any failed.
"""
import argparse, os, re, subprocess, sys
import yaml

# Each entry: the compose files given together (an override after the file it extends), and the env file.
COMPOSE_FILES = [(["compose/docker-compose.yml"], "compose/.env.example"),
                 (["compose/docker-compose.yml", "compose/docker-compose.cluster.yml"], "compose/.env.example"),
                 (["compose/docker-compose.remote.yml"], "compose/remote.env.example")]
# Libraries of debian:bookworm-slim itself (libc6, libgcc-s1, libstdc++6 via apt, zlib1g).
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
failures = []


def check(ok, what, detail=""):
    print(("ok    " if ok else "FAIL  ") + what + ("" if ok or not detail else "\n      " + detail.strip().replace("\n", "\n      ")))
    if not ok:
        failures.append(what)


def run(argv, env=None, cwd=None):
    result = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    return result.returncode, result.stdout


def compose_config(root, compose_files, env_file):
    files = [arg for path in compose_files for arg in ("-f", path)]
    code, output = run(["docker-compose", "--env-file", env_file] + files + ["config"], cwd=root)
    check(code == 0, f"docker-compose config: {' + '.join(compose_files)} with {env_file}", output)
    return yaml.safe_load(output) if code == 0 else None


def check_rendered_secrets(name, service, compose_file):
    """A service whose entry point is render-secrets.sh fails at start when a template needs a variable it is not given."""
    entrypoint = service.get("entrypoint") or []
    if not any(str(arg).endswith("render-secrets.sh") for arg in entrypoint):
        return
    environment = service.get("environment") or {}
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target = (volume.get("source"), volume.get("target")) if isinstance(volume, dict) else (volume.split(":")[0], volume.split(":")[1])
        mounts[target] = source
    arguments = entrypoint[entrypoint.index(next(a for a in entrypoint if str(a).endswith("render-secrets.sh"))) + 1:]
    arguments = arguments[:arguments.index("--")] if "--" in arguments else arguments
    arguments = [a for a in arguments if a != "--owner"][1:] if "--owner" in arguments else arguments
    for template in arguments[0::2]:
        source = mounts.get(template)
        if not source or not os.path.exists(source):
            continue  # rendered from an earlier output, or not a file of the repository
        needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", "".join(line for line in open(source) if not line.startswith("#"))))
        missing = sorted(needed - set(environment))
        check(not missing, f"{compose_file} service {name}: environment has every secret of {os.path.basename(source)}",
              f"missing: {', '.join(missing)}")


def container_to_host(args, volumes):
    """Rewrites container paths in arguments to the host files compose mounts there."""
    mounts = []
    for volume in volumes or []:
        source, target = (volume.get("source"), volume.get("target")) if isinstance(volume, dict) else (volume.split(":")[0], volume.split(":")[1])
        if source and source.startswith("/"):
            mounts.append((target, source))
    rewritten = []
    for arg in args:
        for target, source in mounts:
            if arg == target or arg.startswith(target + "/"):
                arg = source + arg[len(target):]
        rewritten.append(arg)
    return rewritten


def cli_help(executable, args, env):
    """`tributary ARGS --help`: exit 0, and the help is that of the subcommand ARGS names (ArgumentParser answers --help
    of an unknown subcommand with the top-level help, exit 0)."""
    code, output = run([executable] + args + ["--help"], env=env)
    words = [arg for arg in args if not arg.startswith("-")]
    usage = re.search(r"USAGE: (.*)", output)
    named = usage is not None and words and usage.group(1).startswith("tributary " + words[0] + " ")
    return code == 0 and named, output


def check_service(name, service, bin_dir, compose_file):
    command = service.get("command")
    if isinstance(command, str):
        command = command.split()
    executable = os.path.join(bin_dir, command[0])
    where = f"{compose_file} service {name}: {' '.join(command)}"
    if not os.access(executable, os.X_OK):
        check(False, where, f"{executable} is not built (swift build -c release)")
        return
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    env.update({key: str(value) for key, value in environment.items()})
    args = container_to_host(command[1:], service.get("volumes"))
    if command[0] == "tributary":
        ok, output = cli_help(executable, args, env)
        check(ok, where + " --help", output)
        help_text = output
    else:
        # As the image's entry point does: a service gets an instance name.
        env.setdefault("TRIBUTARY_SERVICE_INSTANCE", command[0].replace("tributary-", "") + "-check")
        code, output = run([executable] + args + ["--dry-run"], env=env)
        check(code == 0, where + " --dry-run", output)
        _, help_text = run([executable, "--help"], env=env)
    documented = set(re.findall(r"\bTRIBUTARY_[A-Z0-9_]+\b", help_text))
    # A run file's unknown keys are skipped by the services, so a typo would pass --dry-run: check them here.
    for flag, path in zip(args, args[1:]):
        if flag == "--config" and os.path.exists(path):
            import tomllib
            with open(path, "rb") as file:
                tables = tomllib.load(file)
            for section, values in tables.items():
                for key in values if isinstance(values, dict) else []:
                    check(f"--{section}.{key} " in help_text, f"{path}: {command[0]} knows [{section}] {key}")
    for variable in sorted(environment):
        if variable.startswith("TRIBUTARY_"):
            check(variable in documented, f"{compose_file} service {name}: {command[0]} accepts {variable}",
                  f"{command[0]} --help does not list {variable}")


def check_runtime_libraries(root, bin_dir):
    dockerfile = open(os.path.join(root, "compose/Dockerfile")).read()
    runtime = dockerfile.split("FROM debian:bookworm-slim", 1)[1]
    installed = set(re.findall(r"\b(lib[a-z0-9.+-]+|redis-tools|ca-certificates|tzdata)\b", runtime.split("rm -rf")[0]))
    for product in ["tributary-learner", "tributary-broadcaster", "tributary-reward", "tributary-validator", "tributary-rollout", "tributary"]:
        path = os.path.join(bin_dir, product)
        if not os.path.exists(path):
            continue
        _, dynamic = run(["readelf", "-d", path])
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
        _, ldd = run(["ldd", path])
        resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
        for library in needed:
            location = resolved.get(library, "")
            if "swift" in location or library.startswith(("libswift", "libFoundation", "libdispatch", "libBlocksRuntime")):
                continue  # linked in by --static-swift-stdlib in the image
            package = None
            # dpkg knows a file by the path its package ships (/lib or /usr/lib under usrmerge, before or after symlinks).
            for candidate in dict.fromkeys([location, os.path.realpath(location), location.replace("/usr/lib/", "/lib/"),
                                            os.path.realpath(location).replace("/usr/lib/", "/lib/")] if location else [library]):
                code, owner = run(["dpkg", "-S", candidate])
                if code == 0:
                    package = owner.split(":")[0].strip()
                    break
            check(package is not None and (package in installed or package in BASE_PACKAGES),
                  f"runtime image provides {library} for {product}" + (f" (package {package})" if package else ""),
                  f"add the package owning {location or library} to the runtime stage of compose/Dockerfile")


def acl_users(root, path):
    """user name -> its rules after the password (`user NAME on >${PASSWORD} RULES...`), from an ACL template."""
    users = {}
    for line in open(os.path.join(root, path)):
        words = line.split()
        if len(words) >= 2 and words[0] == "user":
            users[words[1]] = [w for w in words[2:] if not w.startswith(">") and w not in ("on", "off")]
    return users


def check_relay_acl(root):
    run, checkpoints = acl_users(root, "compose/redis/users.acl"), acl_users(root, "compose/redis/checkpoints-users.acl")
    check(set(checkpoints) == set(run), "checkpoint Redis ACL has a user for every user of the run's (compose/redis/checkpoints-users.acl)",
          f"run's: {sorted(run)}, checkpoint Redis's: {sorted(checkpoints)}")
    relay = acl_users(root, "compose/redis/relay-users.acl")
    check(relay.get("rollout") == checkpoints.get("rollout") != None,
          "relay ACL gives rollout workers the checkpoint Redis's rights (compose/redis/relay-users.acl)",
          f"relay: {relay.get('rollout')}\ncheckpoint Redis: {checkpoints.get('rollout')}")
    # Replicas read nothing: only the replication commands.
    check(checkpoints.get("replica") == ["resetkeys", "resetchannels", "-@all", "+psync", "+replconf", "+ping"],
          "checkpoint Redis ACL: user replica may only replicate", f"{checkpoints.get('replica')}")
    # Only the broadcaster writes checkpoints.
    writers = sorted(name for name, rules in checkpoints.items() if name != "admin" and any(r.startswith(("%RW~", "%W~", "~")) for r in rules))
    check(writers == ["broadcaster"], "checkpoint Redis ACL: only the broadcaster writes keys", f"writers: {writers}")


def redis_url_user_and_address(url):
    match = re.fullmatch(r"redis://([^:@/]+):[^@]*@([^/]+)", str(url))
    return (match.group(1), match.group(2)) if match else (None, None)


def check_checkpoint_redis(name, service, compose_file, config):
    """A Tributary service reads checkpoints from the checkpoint Redis (never from the run's: relays replicate that one), as its own user."""
    environment = service.get("environment") or {}
    if "TRIBUTARY_REDIS_URL" not in environment:
        return
    user, address = redis_url_user_and_address(environment["TRIBUTARY_REDIS_URL"])
    checkpoint_user, checkpoint_address = redis_url_user_and_address(environment.get("TRIBUTARY_CHECKPOINTS_REDIS_URL", ""))
    check(checkpoint_address is not None and checkpoint_address != address and checkpoint_user == user,
          f"{compose_file} service {name}: checkpoints in a Redis of their own, as user {user}",
          f"TRIBUTARY_REDIS_URL {address}, TRIBUTARY_CHECKPOINTS_REDIS_URL {environment.get('TRIBUTARY_CHECKPOINTS_REDIS_URL')}")
    if "checkpoints" in config["services"]:
        check(checkpoint_address == "checkpoints:6379", f"{compose_file} service {name}: TRIBUTARY_CHECKPOINTS_REDIS_URL is the checkpoints service",
              f"{checkpoint_address}")
    if "relay" in config["services"]:
        relay_user, relay_address = redis_url_user_and_address(environment.get("TRIBUTARY_ROLLOUT_CHECKPOINT_REDIS_URL", ""))
        check(relay_address == "relay:6379" and relay_user == user, f"{compose_file} service {name}: reads checkpoints from the relay",
              f"TRIBUTARY_ROLLOUT_CHECKPOINT_REDIS_URL {environment.get('TRIBUTARY_ROLLOUT_CHECKPOINT_REDIS_URL')}")
        relay = config["services"]["relay"].get("environment") or {}
        origin = f"{relay.get('CENTRAL_HOST')}:{relay.get('CENTRAL_REDIS_PORT')}"
        check(origin == checkpoint_address and origin != address,
              f"{compose_file} service relay replicates the checkpoint Redis ({checkpoint_address}), not the run's ({address})",
              f"the relay's origin: {origin}")


def published_port(service, container_port):
    for port in service.get("ports") or []:
        if isinstance(port, dict) and int(port.get("target", 0)) == container_port:
            return str(port.get("published"))
        if isinstance(port, str) and port.rsplit(":", 1)[-1].split("/")[0] == str(container_port):
            return port.rsplit(":", 2)[-2]
    return None


def check_remote_origin_ports(root, configs):
    """The remote host's default ports of the central Redis are the ones the main file publishes."""
    main, remote = configs.get("compose/docker-compose.yml"), configs.get("compose/docker-compose.remote.yml")
    if not main or not remote:
        return
    relay = remote["services"]["relay"].get("environment") or {}
    _, run_address = redis_url_user_and_address(remote["services"]["rollout"]["environment"].get("TRIBUTARY_REDIS_URL", ""))
    for service, port in [("checkpoints", str(relay.get("CENTRAL_REDIS_PORT"))), ("redis", (run_address or ":").rsplit(":", 1)[1])]:
        check(published_port(main["services"][service], 6379) == port,
              f"compose/docker-compose.remote.yml reaches the central {service} service on the port it publishes ({port})",
              f"published: {published_port(main['services'][service], 6379)}")


def check_docs(root, services_by_file, bin_dir):
    text = open(os.path.join(root, "docs/deploy.md")).read()
    for path in sorted(set(re.findall(r"\b(compose/[A-Za-z0-9_./-]+[A-Za-z0-9_])", text))):
        if path in ("compose/.env", "compose/remote.env", "compose/out"):
            continue  # made by the operator from the examples
        check(os.path.exists(os.path.join(root, path)), f"docs/deploy.md: {path} exists")
    all_services = set().union(*services_by_file.values())
    for line in re.findall(r"^\s*(?:\$ )?(docker compose .*)$", text, re.M):
        files = re.findall(r"-f (compose/\S+)", line)  # the last: an override's services include its base file's
        services = services_by_file.get(files[-1], all_services) if files else all_services
        verb = re.search(r"\b(up|logs|exec|run|stop|start|restart|pull|build|rm|kill|ps|config|down|cp|top)\b(.*)", line)
        if not verb:
            continue
        words = [w for w in verb.group(2).split() if not w.startswith("-") and "=" not in w]
        if verb.group(1) == "run" and words:
            # The command run in the container must be one its executable accepts.
            argv = verb.group(2).split()
            argv = argv[argv.index(words[0]) + 1:]
            if argv and os.access(os.path.join(bin_dir, argv[0]), os.X_OK):
                env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
                if argv[0] == "tributary":
                    ok, output = cli_help(os.path.join(bin_dir, argv[0]), argv[1:], env)
                else:
                    code, output = run([os.path.join(bin_dir, argv[0])] + argv[1:] + ([] if "--dry-run" in argv else ["--dry-run"]), env=env)
                    ok = code == 0
                check(ok, f"docs/deploy.md: `{' '.join(argv)}` is accepted by {argv[0]}", output)
        if verb.group(1) in ("run", "exec") and words:
            words = words[:1]  # the rest is the command run in the container
        elif verb.group(1) in ("cp",):
            words = [w.split(":")[0] for w in words if ":" in w]
        for word in words:
            if re.fullmatch(r"[a-z][a-z0-9_-]*", word):
                check(word in services, f"docs/deploy.md: service '{word}' in `{line.strip()}` exists")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    options = parser.parse_args()
    services_by_file = {}
    configs = {}
    for compose_files, env_file in COMPOSE_FILES:
        config = compose_config(options.root, compose_files, env_file)
        if not config:
            continue
        compose_file = " + ".join(compose_files)
        # docs/deploy.md's `-f FILE` names the last file of a group (an override: with the file it extends)
        services_by_file[compose_files[-1]] = set(config["services"])
        configs[compose_file] = config
        for name, service in sorted(config["services"].items()):
            check_rendered_secrets(name, service, compose_file)
            if (service.get("build") or {}).get("dockerfile") == "compose/Dockerfile":
                check_service(name, service, options.bin_dir, compose_file)
                check_checkpoint_redis(name, service, compose_file, config)
    check_relay_acl(options.root)
    check_remote_origin_ports(options.root, configs)
    check_runtime_libraries(options.root, options.bin_dir)
    check_docs(options.root, services_by_file, options.bin_dir)
    print(f"{len(failures)} failed" if failures else "all deployment checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
