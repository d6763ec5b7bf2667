# Profile `devel`: what a person debugging a guest wants at hand.
{ pkgs, ... }:
{
  environment.systemPackages = with pkgs; [ git vim gdb strace ltrace tmux htop file less ];
}
