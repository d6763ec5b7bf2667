# Profile `build-tools`: what building a Linux kernel (reconcile's `kernels.*`) needs.
{ pkgs, ... }:
{
  environment.systemPackages = with pkgs; [
    gcc gnumake bc bison flex elfutils openssl pkg-config ncurses perl python3 git cpio zstd
  ];
}
