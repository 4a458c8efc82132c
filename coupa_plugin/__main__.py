from coupa_plugin.refhost.cli import main

main(prog_name="coupa-iga")
